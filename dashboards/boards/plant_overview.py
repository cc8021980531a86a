"""Plant overview: OEE and its factors by line and machine, machine states, good parts vs plan,
active alerts."""

from __future__ import annotations

from analytics.kpi_feed.names import kpi_signal
from dashboards import influxql as q
from dashboards.boards.common import FACTOR_STEPS, OEE_STEPS, PLANT_VARS, STATE_MAPPINGS
from dashboards.grafana import Dashboard, Panel, Target, Threshold
from zhizao.signals import STATE

UID = "zhizao-plant-overview"
GOOD = kpi_signal("shift", "good_count")
PLAN = kpi_signal("shift", "plan_count")


def plant_overview() -> Dashboard:
    shift_oee = kpi_signal("shift", "oee")
    factors = q.sig_re(r"^kpi\.shift\.(availability|performance|quality)$")
    panels = [
        Panel("OEE by line (current shift)", "stat",
              [Target(q.latest(f"{q.LINES} AND {q.sig(shift_oee)}", ("line",)), "$tag_line")],
              unit="percentunit", width=8, height=6, min=0, max=1, decimals=1, thresholds=OEE_STEPS,
              description="Line OEE = availability × performance × quality over the shift's planned time "
                          "so far (written by the KPI feed)."),
        Panel("OEE by machine (current shift)", "bargauge",
              [Target(q.latest(f"{q.MACHINES} AND {q.sig(shift_oee)}"), "$tag_machine")],
              unit="percentunit", width=8, height=6, min=0, max=1, decimals=1, thresholds=OEE_STEPS,
              options={"orientation": "horizontal", "displayMode": "gradient"}),
        Panel("OEE factors by machine (current shift)", "bargauge",
              [Target(q.latest(f"{q.MACHINES} AND {factors}",
                               ("machine", "signal")), "$tag_machine $tag_signal")],
              unit="percentunit", width=8, height=6, min=0, max=1, decimals=1, thresholds=FACTOR_STEPS,
              options={"orientation": "horizontal", "displayMode": "basic"}),
        Panel("Machine state", "state-timeline",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(STATE)}", field_name=q.FIELD_STR,
                               fill="previous"), "$tag_machine")],
              unit="none", width=24, height=7, mappings=STATE_MAPPINGS,
              options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8}),
        Panel("OEE, rolling hour", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(kpi_signal('1h', 'oee'))}"),
                      "$tag_machine")],
              unit="percentunit", width=12, height=8, min=0, max=1, thresholds=OEE_STEPS,
              threshold_style="line"),
        Panel("Good parts vs plan (current shift)", "timeseries",
              [Target(q.series("last", f"{q.LINES} AND {q.sig(GOOD)}", ("line",)), "$tag_line good"),
               Target(q.series("last", f"{q.LINES} AND {q.sig(PLAN)}", ("line",)), "$tag_line plan")],
              unit="short", width=12, height=8, min=0,
              description="Plan = planned time so far ÷ ideal cycle time (what a perfect line would make)."),
        Panel("Active alerts", "table",
              [Target(q.open_events(), result_format="table")],
              unit="none", width=24, height=7,
              thresholds=[Threshold(None, "green")],
              description="KPI alerts and anomaly episodes still open (ingest's events)."),
    ]
    return Dashboard(UID, "zhizao · Plant overview", "The line at a glance: OEE, states, output, alerts.",
                     panels, PLANT_VARS)
