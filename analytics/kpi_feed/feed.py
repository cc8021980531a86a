"""Computing KPIs with the KPI engine and turning them into samples for the store.

:meth:`KpiFeed.samples` is pure given the store's contents: for time ``now`` it computes, for every
window of :data:`~analytics.kpi_feed.names.WINDOWS`, the KPI record of each machine and line under
``scope`` and returns them as samples timestamped ``now`` (naming in :mod:`analytics.kpi_feed.names`).
:meth:`KpiFeed.once` writes them; :meth:`KpiFeed.backfill` does so for a series of past instants, so
charts have history right after a store is filled (the simulator writes a whole shift in seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from analytics.kpi_feed import contributors, names
from ingest.storage.base import SampleFrame, Store
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig

log = logging.getLogger(__name__)
SHIFT_LOOKBACK = timedelta(days=2)
"""How far back the most recent shift is looked for when no shift is running at ``now``."""


def shift_window(plant: PlantConfig, now: datetime) -> tuple[datetime, datetime] | None:
    """``[start, now)`` of the shift running at ``now``, else ``[start, end)`` of the last one that
    ended before ``now`` (within two days); ``None`` when the calendar has none."""
    windows = [w for w in plant.calendar.windows(now - SHIFT_LOOKBACK, now) if w.start < now]
    if not windows:
        return None
    last = windows[-1]
    return last.start, min(last.end, now)


def record_samples(asset: AssetPath, window: str, record: Mapping[str, Any], ts: datetime, *,
                   baseline: float | None = None, efficiency_pct: float = 0.0) -> list[Sample]:
    """The samples of one KPI record (a machine's or a line's); ``None`` figures are left out, and
    so are the production figures of a machine that makes no parts (``producing: false``, a
    compressor: :data:`~analytics.kpi_feed.names.NOT_APPLICABLE_TO_UTILITIES`) — its OEE of 0 or
    Quality of 1 is no measurement, and a Grafana panel would draw it as one."""
    out: list[Sample] = []
    skip = frozenset(names.NOT_APPLICABLE_TO_UTILITIES) if record.get("producing") is False else frozenset()

    def add(name: str, value: object, unit: str | None) -> None:
        if name in skip or isinstance(value, bool) or not isinstance(value, int | float):
            return
        out.append(Sample(asset, names.kpi_signal(window, name), ts, float(value), unit))

    for name in names.RATIOS:
        add(name, record.get(name), "ratio")
    for name in names.COUNTS:
        add(name, record.get(name), None)
    for name in names.FIGURES:
        unit = "s" if name.endswith("_s") else "kWh" if "kwh" in name else "kW" if name == "peak_kw" else None
        add(name, record.get(name), unit)
    for state, kwh in (record.get("energy_by_state_kwh") or {}).items():
        add(f"energy_by_state_kwh.{state}", kwh, "kWh")
    for product, scrap in (record.get("scrap_by_product") or {}).items() if not skip else ():
        add(f"scrap_by_product.{product}", scrap, None)
    ideal, total = record.get("ideal_time_s") or 0.0, record.get("total_count") or 0
    if ideal > 0 and total > 0:
        add("plan_count", record.get("planned_time_s", 0.0) * total / ideal, None)
    if baseline is not None:
        add(names.BASELINE, baseline, "kWh")
        add(names.TARGET, baseline / (1 + efficiency_pct / 100.0), "kWh")
    return out


class KpiFeed:
    """Computes KPIs of ``scopes`` (sites or lines) from ``store`` and writes them to ``sink``.

    ``sink`` is a store on the KPI measurement (``zhizao_kpi``), not the telemetry one: the KPI
    engine must never read its own output back as machine telemetry (it would count the line
    pseudo-machine as a machine and flag the 1-minute ``kpi.*`` series as telemetry gaps).
    ``baselines`` maps a machine path or a line path (``site/area/line``) to its baseline kWh per
    good part. Methods raise what the stores raise (``StoreUnavailable``); one call at a time.
    """

    def __init__(self, store: Store, sink: Store, plant: PlantConfig, cfg: KpiConfig,
                 scopes: Iterable[str], *, baselines: Mapping[str, float] | None = None) -> None:
        self.store = store
        self.sink = sink
        self.plant = plant
        self.cfg = cfg
        self.scopes = list(scopes)
        self.baselines = dict(baselines or {})
        self.written = 0

    async def samples(self, scope: str, now: datetime) -> list[Sample]:
        """KPI samples of every machine and line under ``scope`` at ``now`` (module docstring)."""
        ranges: list[tuple[str, datetime, datetime]] = [("1h", now - timedelta(hours=1), now)]
        shift = shift_window(self.plant, now)
        if shift is not None and shift[1] > shift[0]:
            ranges.insert(0, ("shift", *shift))
        pct = self.cfg.targets.energy_efficiency_pct
        out: list[Sample] = []
        for window, start, end in ranges:
            report = await kpi_report(self.store, self.plant, self.cfg, scope, start=start, end=end,
                                      group_by=GroupBy.MACHINE)
            w = report["windows"][0]
            for rec in w["machines"]:
                asset = AssetPath.parse(rec["machine"])
                out += record_samples(asset, window, rec, now, baseline=self.baselines.get(rec["machine"]),
                                      efficiency_pct=pct)
            for rec in w["lines"]:
                site, area, line = str(rec["line"]).split("/")
                asset = AssetPath(site, area, line, names.LINE_MACHINE)
                out += record_samples(asset, window, rec, now, baseline=self.baselines.get(rec["line"]),
                                      efficiency_pct=pct)
        return out

    async def once(self, now: datetime) -> int:
        """Compute and write the KPI samples of every scope at ``now``; returns how many were written."""
        samples: list[Sample] = []
        for scope in self.scopes:
            samples += await self.samples(scope, now)
            samples += await contributors.mirror(self.store, scope, now)
        if samples:
            await self.sink.write(SampleFrame.from_samples(samples))
        self.written += len(samples)
        return len(samples)

    async def backfill(self, start: datetime, end: datetime, step: timedelta) -> int:
        """:meth:`once` at ``start + step``, ``start + 2 step`` ... up to ``end`` (inclusive)."""
        if step <= timedelta(0):
            raise ValueError("step must be positive")
        written = 0
        t = start + step
        while t <= end:
            written += await self.once(t)
            t += step
        log.info("KPI backfill %s .. %s every %s: %d samples", start, end, step, written)
        return written
