"""Pieces every board shares: the site/line/machine variables, state colours, OEE thresholds."""

from __future__ import annotations

from typing import Final

from dashboards import influxql as q
from dashboards.grafana import Threshold, ValueMapping, Variable
from zhizao.signals import STATE, MachineState

SITE_VAR: Final = Variable("site", "Site", q.tag_values("site", q.sig(STATE)))
LINE_VAR: Final = Variable("line", "Line", q.tag_values("line", f"{q.SITE} AND {q.sig(STATE)}"),
                           multi=True, include_all=True)
MACHINE_VAR: Final = Variable(
    "machine", "Machine", q.tag_values("machine", f"{q.SITE} AND {q.LINE} AND {q.sig(STATE)}"),
    multi=True, include_all=True,
)
PLANT_VARS: Final = [SITE_VAR, LINE_VAR, MACHINE_VAR]
"""Machines are the assets that report ``state``: this leaves out the line KPI pseudo-machine and
the edge fleet's health assets."""

STATE_COLOURS: Final = {
    MachineState.RUNNING: "green", MachineState.IDLE: "yellow", MachineState.SETUP: "blue",
    MachineState.DOWN: "red", MachineState.OFF: "#555555",
}
STATE_MAPPINGS: Final = [ValueMapping(s.value, c) for s, c in STATE_COLOURS.items()]

OEE_STEPS: Final = [Threshold(None, "red"), Threshold(0.6, "orange"), Threshold(0.85, "green")]
"""World-class OEE is 85 %; below 60 % is poor."""
FACTOR_STEPS: Final = [Threshold(None, "red"), Threshold(0.8, "orange"), Threshold(0.9, "green")]
SCRAP_STEPS: Final = [Threshold(None, "green"), Threshold(0.02, "orange"), Threshold(0.05, "red")]
ANOMALY_STEPS: Final = [Threshold(None, "green"), Threshold(0.5, "red")]
