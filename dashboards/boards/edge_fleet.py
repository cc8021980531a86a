"""Edge fleet: agents and gateways online/offline, backlog size and age, drops, dead letters,
reconnects — from the health samples of :mod:`zhizao.fleet`."""

from __future__ import annotations

from dashboards import influxql as q
from dashboards.grafana import Dashboard, Panel, Target, Threshold, ValueMapping, Variable
from zhizao import fleet

UID = "zhizao-edge-fleet"
AGENT_VAR = Variable("agent", "Agent / gateway",
                     q.tag_values("machine", f"{q.SITE} AND \"area\" = '{fleet.AREA}'"),
                     multi=True, include_all=True)
SITE_ANY = Variable("site", "Site", q.tag_values("site", f"\"area\" = '{fleet.AREA}'"))
BACKLOG_AGE_STEPS = [Threshold(None, "green"), Threshold(60, "orange"), Threshold(600, "red")]
BAD_COUNT_STEPS = [Threshold(None, "green"), Threshold(1, "red")]


def _increase(signal: str) -> str:
    """Increase of a fleet counter between consecutive reports (an agent restart resets the counter:
    the negative step is dropped). Raw points, not time buckets, so two reports are enough."""
    return (f'SELECT non_negative_difference("{q.FIELD_NUM}") AS "value" FROM "{q.MEASUREMENT}" '
            f'WHERE {q.FLEET} AND {q.sig(signal)} AND $timeFilter GROUP BY "machine"')


def edge_fleet() -> Dashboard:
    panels = [
        Panel("Online", "state-timeline",
              [Target(q.series("max", f"{q.FLEET} AND {q.sig(fleet.UP)}", fill="0"), "$tag_machine")],
              unit="none", width=16, height=7,
              mappings=[ValueMapping("1", "green", "online"), ValueMapping("0", "red", "offline")],
              options={"showValue": "never", "mergeValues": True},
              description="An interval without a health report is offline."),
        Panel("Agents reporting (last value in range)", "table",
              [Target(q.latest(f"{q.FLEET} AND {q.sig(fleet.BACKLOG_SAMPLES)}"), result_format="table")],
              unit="short", width=8, height=7,
              description="Last report of each agent/gateway: its time is when it was last seen."),
        Panel("Backlog size", "timeseries",
              [Target(q.series("max", f"{q.FLEET} AND {q.sig(fleet.BACKLOG_SAMPLES)}"), "$tag_machine")],
              unit="short", width=12, height=8, min=0),
        Panel("Backlog age (oldest sample waiting)", "timeseries",
              [Target(q.series("max", f"{q.FLEET} AND {q.sig(fleet.BACKLOG_AGE_S)}"), "$tag_machine")],
              unit="s", width=12, height=8, min=0, thresholds=BACKLOG_AGE_STEPS, threshold_style="line"),
        Panel("Dropped samples (overflow policy)", "timeseries",
              [Target(_increase(fleet.DROPPED_TOTAL), "$tag_machine")],
              unit="short", width=8, height=7, min=0, thresholds=BAD_COUNT_STEPS),
        Panel("Dead letters", "timeseries",
              [Target(_increase(fleet.DEAD_LETTERS_TOTAL), "$tag_machine")],
              unit="short", width=8, height=7, min=0, thresholds=BAD_COUNT_STEPS),
        Panel("Reconnects", "timeseries",
              [Target(_increase(fleet.RECONNECTS_TOTAL), "$tag_machine")],
              unit="short", width=8, height=7, min=0),
        Panel("Samples sent", "timeseries",
              [Target(_increase(fleet.SENT_TOTAL), "$tag_machine")],
              unit="short", width=24, height=7, min=0),
    ]
    return Dashboard(UID, "zhizao · Edge fleet", "Agents and gateways: online, backlog, drops, dead letters.",
                     panels, [SITE_ANY, AGENT_VAR], time_from="now-6h")
