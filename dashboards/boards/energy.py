"""Energy: power and energy by machine and by state, kWh per good part against baseline and
target, idle energy, cost."""

from __future__ import annotations

from analytics.kpi_feed.names import BASELINE, TARGET, kpi_signal
from dashboards import influxql as q
from dashboards.boards.common import PLANT_VARS
from dashboards.grafana import Dashboard, Panel, Target, Threshold
from zhizao.signals import ENERGY_KWH, POWER_KW

UID = "zhizao-energy"
BY_STATE = q.sig_re(r"^kpi\.shift\.energy_by_state_kwh\.")
IDLE_SHARE_STEPS = [Threshold(None, "green"), Threshold(0.15, "orange"), Threshold(0.3, "red")]


def energy() -> Dashboard:
    kwh_pp = kpi_signal("shift", "kwh_per_good_part")
    panels = [
        Panel("Power by machine", "timeseries",
              [Target(q.series("mean", f"{q.MACHINES} AND {q.sig(POWER_KW)}"), "$tag_machine")],
              unit="kwatt", width=16, height=8, min=0,
              options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]}}),
        Panel("Energy in range by machine", "bargauge",
              [Target(q.counter_increase(f"{q.MACHINES} AND {q.sig(ENERGY_KWH)}"), "$tag_machine")],
              unit="kwatth", width=8, height=8, min=0, decimals=1,
              options={"orientation": "horizontal", "displayMode": "gradient"},
              description="Energy each machine used in the selected range (any range): the sum of its energy "
                          "counter's increases between consecutive samples, so a counter reset or rollover "
                          "does not distort it. Not counted: between the last sample before a reset and the "
                          "first after it, and before the first / after the last sample in the range — one "
                          "sample interval each (1 s at 1 Hz)."),
        Panel("Energy by state (current shift)", "bargauge",
              [Target(q.latest(f"{q.MACHINES} AND {BY_STATE}", ("machine", "signal")),
                      "$tag_machine $tag_signal")],
              unit="kwatth", width=12, height=8, min=0, decimals=2,
              options={"orientation": "horizontal", "displayMode": "basic"},
              description="kWh spent running, idle, in setup, down and off (signal suffix = state)."),
        Panel("kWh per good part vs baseline and target", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(kwh_pp)}"), "$tag_machine"),
               Target(q.series("last", f"{q.MACHINES} AND {q.sig(kpi_signal('shift', BASELINE))}"),
                      "$tag_machine baseline"),
               Target(q.series("last", f"{q.MACHINES} AND {q.sig(kpi_signal('shift', TARGET))}"),
                      "$tag_machine target")],
              unit="kwatth", width=12, height=8, min=0,
              description="Target = baseline ÷ (1 + energy-efficiency target %), from the KPI config."),
        Panel("Idle energy share (current shift)", "bargauge",
              [Target(q.latest(f"{q.MACHINES} AND {q.sig(kpi_signal('shift', 'idle_energy_share_ratio'))}"),
                      "$tag_machine")],
              unit="percentunit", width=8, height=7, min=0, max=1, decimals=1, thresholds=IDLE_SHARE_STEPS,
              options={"orientation": "horizontal", "displayMode": "gradient"},
              description="Share of energy spent while not running (idle, setup, down, off)."),
        Panel("Energy cost by line (current shift)", "stat",
              [Target(q.latest(f"{q.LINES} AND {q.sig(kpi_signal('shift', 'energy_cost'))}", ("line",)),
                      "$tag_line")],
              unit="currencyCNY", width=8, height=7, decimals=2,
              description="Time-of-use tariff from the plant file; the currency unit assumes CNY."),
        Panel("Energy cost per good part", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND "
                                       f"{q.sig(kpi_signal('shift', 'energy_cost_per_good_part'))}"),
                      "$tag_machine")],
              unit="currencyCNY", width=8, height=7, min=0),
    ]
    return Dashboard(UID, "zhizao · Energy", "Power, energy by state, kWh per good part, idle energy, cost.",
                     panels, PLANT_VARS)
