"""Quality: scrap rate, first-pass yield, scrap by product, predicted scrap probability."""

from __future__ import annotations

from analytics.kpi_feed.names import kpi_signal
from dashboards import influxql as q
from dashboards.boards.common import PLANT_VARS, SCRAP_STEPS
from dashboards.grafana import Dashboard, Panel, Target, Threshold
from zhizao.signals import SCRAP_PROBABILITY

UID = "zhizao-quality"
FPY_STEPS = [Threshold(None, "red"), Threshold(0.95, "orange"), Threshold(0.98, "green")]
SCRAP_BY_PRODUCT = q.sig_re(r"^kpi\.shift\.scrap_by_product\.")


def quality() -> Dashboard:
    panels = [
        Panel("Scrap rate by machine (current shift)", "bargauge",
              [Target(q.latest(f"{q.MACHINES} AND {q.sig(kpi_signal('shift', 'scrap_ratio'))}"),
                      "$tag_machine")],
              unit="percentunit", width=8, height=7, min=0, max=0.1, decimals=2, thresholds=SCRAP_STEPS,
              options={"orientation": "horizontal", "displayMode": "gradient"}),
        Panel("First-pass yield by line (current shift)", "stat",
              [Target(q.latest(f"{q.LINES} AND {q.sig(kpi_signal('shift', 'first_pass_yield_ratio'))}",
                               ("line",)), "$tag_line")],
              unit="percentunit", width=8, height=7, min=0, max=1, decimals=2, thresholds=FPY_STEPS),
        Panel("Scrap by product (current shift)", "bargauge",
              [Target(q.latest(f"{q.LINES} AND {SCRAP_BY_PRODUCT}", ("line", "signal")), "$tag_signal")],
              unit="short", width=8, height=7, min=0,
              options={"orientation": "horizontal", "displayMode": "basic"},
              description="Scrapped parts per product (signal suffix = product)."),
        Panel("Scrap rate, rolling hour", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(kpi_signal('1h', 'scrap_ratio'))}"),
                      "$tag_machine")],
              unit="percentunit", width=12, height=8, min=0, thresholds=SCRAP_STEPS, threshold_style="line"),
        Panel("Predicted scrap probability", "timeseries",
              [Target(q.series("max", f"{q.MACHINES} AND {q.sig(SCRAP_PROBABILITY)}"), "$tag_machine")],
              unit="percentunit", width=12, height=8, min=0, max=1,
              thresholds=[Threshold(None, "green"), Threshold(0.5, "red")], threshold_style="line"),
        Panel("Scrapped parts (current shift)", "timeseries",
              [Target(q.series("last", f"{q.MACHINES} AND {q.sig(kpi_signal('shift', 'scrap_count'))}"),
                      "$tag_machine")],
              unit="short", width=24, height=7, min=0),
    ]
    return Dashboard(UID, "zhizao · Quality", "Scrap, first-pass yield, scrap by product, predicted scrap.",
                     panels, PLANT_VARS)
