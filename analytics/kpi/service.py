"""KPI queries against a store: the report of a scope over a range, and improvement vs a baseline.

The API router, the CLI and the KPI alerter all go through these two functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from analytics.errors import UnknownScope
from analytics.kpi.config import KpiConfig
from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi.improvement import compare
from analytics.kpi.report import build_report, line_of, under
from analytics.kpi.series import MachineData
from analytics.kpi.source import fetch
from analytics.kpi.windows import GroupBy, make_windows
from ingest.storage.base import Store
from zhizao.plant import PlantConfig

MAX_LISTED = 20
"""How many known lines and machines an unknown-scope message lists (then "... N more")."""


async def kpi_report(store: Store, plant: PlantConfig, cfg: KpiConfig, scope: str, *, start: datetime,
                     end: datetime, group_by: GroupBy = GroupBy.SHIFT, strict: bool = False,
                     where: str = "scope") -> dict[str, Any]:
    """KPIs of every machine, line and the whole ``scope`` for each window of ``[start, end)``.

    ``strict`` (the CLI and the HTTP API: a scope a person typed): when neither the plant file nor
    the range's data has a machine under ``scope``, the store's catalogue is asked; a machine it
    knows under ``scope`` (silent in this range) gets a ``no_data`` record, and when there is none
    at all :class:`~analytics.errors.UnknownScope` (``where``: the option or parameter) is raised
    listing the known lines and machines, instead of an empty report whose total looks plausible
    (Quality 1 of no parts). Not strict (services polling configured scopes): an empty report."""
    windows = make_windows(plant.calendar, start, end, group_by)
    # A state sample holds for at most gap_threshold_s: reading at least that far back makes a
    # window's states independent of where the query starts.
    margin = timedelta(seconds=max(cfg.data_quality.lookback_s, cfg.data_quality.gap_threshold_s))
    dq = cfg.data_quality
    bucket = timedelta(seconds=dq.coverage_bucket_s) if dq.check_all_signals else None
    data = await fetch(store, scope, start, end, margin, coverage_bucket=bucket)
    if strict and not data and not any(under(m.asset, scope) for m in plant.machines):
        known = await catalogued_machines(store, scope)
        if not known:
            raise UnknownScope(where, await _unknown_scope_message(store, plant, scope))
        data = {a: MachineData(a) for a in known}
    return build_report(data, windows, plant, cfg.data_quality, scope=scope, group_by=group_by)


async def catalogued_machines(store: Store, prefix: str | None) -> list[str]:
    """Assets under ``prefix`` the store has KPI signals of (machines, not fleet or line series)."""
    entries = await store.catalogue(None if prefix in (None, "", "*") else prefix)
    return sorted({e.asset for e in entries if e.signal in KPI_SIGNALS})


async def _unknown_scope_message(store: Store, plant: PlantConfig, scope: str) -> str:
    machines = sorted({m.asset for m in plant.machines} | set(await catalogued_machines(store, None)))
    if not machines:
        return f"no machine under {scope!r}: the plant file lists none and the store holds no KPI data"
    lines = sorted({line_of(m) for m in machines})
    return (f"no machine under {scope!r} in the plant file or in the store; "
            f"known lines: {_listed(lines)}; machines: {_listed(machines)}")


def _listed(names: list[str]) -> str:
    more = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f" ... ({more} more)" if more > 0 else "")


async def improvement_report(store: Store, plant: PlantConfig, cfg: KpiConfig, scope: str, *,
                             baseline: tuple[datetime, datetime], current: tuple[datetime, datetime],
                             strict: bool = False, where: str = "scope") -> dict[str, Any]:
    """Scope totals of the baseline and current ranges, their changes and the targets met, and the
    same comparison per line (``lines``) and per machine (``machines``, with ``producing``)
    (``strict``, ``where``: as :func:`kpi_report`)."""
    base = await kpi_report(store, plant, cfg, scope, start=baseline[0], end=baseline[1],
                            group_by=GroupBy.MACHINE, strict=strict, where=where)
    cur = await kpi_report(store, plant, cfg, scope, start=current[0], end=current[1],
                           group_by=GroupBy.MACHINE, strict=strict, where=where)
    bt, ct = base["windows"][0]["total"], cur["windows"][0]["total"]
    lines = {ln["line"]: ln for ln in base["windows"][0]["lines"]}
    per_line = [{"line": ln["line"], **compare(lines[ln["line"]], ln, cfg.targets)}
                for ln in cur["windows"][0]["lines"] if ln["line"] in lines]
    bw, cw = base["windows"][0], cur["windows"][0]
    machines = {m["machine"]: m for m in bw["machines"]}
    per_machine = [{"machine": m["machine"], "producing": m.get("producing", True),
                    **compare(machines[m["machine"]], m, cfg.targets)}
                   for m in cw["machines"] if m["machine"] in machines]
    return {"scope": scope, "baseline": {"start": bw["start"], "end": bw["end"]},
            "current": {"start": cw["start"], "end": cw["end"]},
            **compare(bt, ct, cfg.targets), "lines": per_line, "machines": per_machine,
            "baseline_total": bt, "current_total": ct}
