"""KPI queries against a store: the report of a scope over a range, and improvement vs a baseline.

The API router, the CLI and the KPI alerter all go through these two functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from analytics.kpi.config import KpiConfig
from analytics.kpi.improvement import compare
from analytics.kpi.report import build_report
from analytics.kpi.source import fetch
from analytics.kpi.windows import GroupBy, make_windows
from ingest.storage.base import Store
from zhizao.plant import PlantConfig


async def kpi_report(store: Store, plant: PlantConfig, cfg: KpiConfig, scope: str, *, start: datetime,
                     end: datetime, group_by: GroupBy = GroupBy.SHIFT) -> dict[str, Any]:
    """KPIs of every machine, line and the whole ``scope`` for each window of ``[start, end)``."""
    windows = make_windows(plant.calendar, start, end, group_by)
    margin = timedelta(seconds=cfg.data_quality.lookback_s)
    dq = cfg.data_quality
    bucket = timedelta(seconds=dq.coverage_bucket_s) if dq.check_all_signals else None
    data = await fetch(store, scope, start, end, margin, coverage_bucket=bucket)
    return build_report(data, windows, plant, cfg.data_quality, scope=scope, group_by=group_by)


async def improvement_report(store: Store, plant: PlantConfig, cfg: KpiConfig, scope: str, *,
                             baseline: tuple[datetime, datetime], current: tuple[datetime, datetime]
                             ) -> dict[str, Any]:
    """Scope totals of the baseline and current ranges, their changes and the targets met."""
    base = await kpi_report(store, plant, cfg, scope, start=baseline[0], end=baseline[1],
                            group_by=GroupBy.MACHINE)
    cur = await kpi_report(store, plant, cfg, scope, start=current[0], end=current[1],
                           group_by=GroupBy.MACHINE)
    bt, ct = base["windows"][0]["total"], cur["windows"][0]["total"]
    lines = {ln["line"]: ln for ln in base["windows"][0]["lines"]}
    per_line = [{"line": ln["line"], **compare(lines[ln["line"]], ln, cfg.targets)}
                for ln in cur["windows"][0]["lines"] if ln["line"] in lines]
    bw, cw = base["windows"][0], cur["windows"][0]
    return {"scope": scope, "baseline": {"start": bw["start"], "end": bw["end"]},
            "current": {"start": cw["start"], "end": cw["end"]},
            **compare(bt, ct, cfg.targets), "lines": per_line,
            "baseline_total": bt, "current_total": ct}
