"""Machine detail: process signals, anomaly score against the model's threshold, fault and alert
annotations, top contributing signals, power and counters of the selected machine(s)."""

from __future__ import annotations

from analytics.kpi_feed.names import kpi_signal
from dashboards import influxql as q
from dashboards.boards.common import ANOMALY_STEPS, OEE_STEPS, PLANT_VARS, STATE_MAPPINGS
from dashboards.grafana import Annotation, Dashboard, Panel, Target
from zhizao.signals import ANOMALY_SCORE, PARTS_GOOD, POWER_KW, STATE

UID = "zhizao-machine-detail"
SCORES = f"^{ANOMALY_SCORE}(\\.|$)"
"""Every model's score series: ``anomaly_score`` (health) and ``anomaly_score.<model>``."""
PROCESS = '"signal" !~ /^(kpi\\.|anomaly|state|product|parts_|energy_kwh|power_kw)/'
"""Process signals: every numeric signal except the well-known ones drawn elsewhere."""


def machine_detail() -> Dashboard:
    panels = [
        Panel("State", "state-timeline",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(STATE)}", field_name=q.FIELD_STR,
                               fill="previous"), "$tag_machine")],
              unit="none", width=18, height=5, mappings=STATE_MAPPINGS,
              options={"showValue": "never", "mergeValues": True}),
        Panel("OEE (current shift)", "stat",
              [Target(q.latest(f"{q.MACHINES} AND {q.sig(kpi_signal('shift', 'oee'))}"), "$tag_machine")],
              unit="percentunit", width=6, height=5, min=0, max=1, decimals=1, thresholds=OEE_STEPS),
        Panel("Process signals", "timeseries",
              [Target(q.series("mean", f"{q.MACHINES} AND {PROCESS}", ("machine", "signal")),
                      "$tag_machine $tag_signal")],
              unit="short", width=24, height=9,
              description="Every numeric process signal of the machine (mean per interval)."),
        Panel("Anomaly score", "timeseries",
              [Target(q.series("max", f"{q.MACHINES} AND {q.sig_re(SCORES)}", ("machine", "signal")),
                      "$tag_machine $tag_signal")],
              unit="percentunit", width=12, height=8, min=0, max=1, thresholds=ANOMALY_STEPS,
              threshold_style="line+area",
              description="0..1, higher is more anomalous; the red line is the model's alert threshold. "
                          "anomaly_score: equipment health (process signals, running only); "
                          "anomaly_score.energy: measured vs expected power, in every state."),
        Panel("Top contributing signals (open anomalies)", "table",
              [Target(q.contributors(), result_format="table")],
              unit="percentunit", width=12, height=8,
              description="Signals that drove the latest anomaly episodes, with their share of the score."),
        Panel("Power", "timeseries",
              [Target(q.series("mean", f"{q.MACHINES} AND {q.sig(POWER_KW)}"), "$tag_machine")],
              unit="kwatt", width=12, height=7, min=0),
        Panel("Good parts", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(PARTS_GOOD)}", fill="previous"),
                      "$tag_machine")],
              unit="short", width=12, height=7, min=0),
    ]
    annotations = [Annotation("Alerts and anomalies", q.event_annotations(), color="red")]
    return Dashboard(UID, "zhizao · Machine detail",
                     "One machine: process signals, anomaly score, faults and alerts.",
                     panels, PLANT_VARS, annotations, time_from="now-3h")
