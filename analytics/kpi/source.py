"""Reading KPI telemetry through ingest's ``Store`` protocol (any backend: DuckDB, InfluxDB).

Only the protocol and its data types are used, so every backend gives the same input and hence
the same KPIs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi.series import MachineData, Series
from ingest.storage.base import Agg, SeriesQuery, Store
from ingest.storage.base import Series as StoreSeries

MAX_POINTS = 50_000_000
"""Per-series point limit passed to the store: KPIs need every raw point, never a truncated series."""


def to_series(s: StoreSeries) -> Series:
    """A store series as engine input: float epoch seconds; bad-quality points set aside.

    Points with the same timestamp (a clock that jumped back reports instants twice) are
    reduced to one, so every backend gives the same series: InfluxDB keeps one point per
    series and instant by design, DuckDB keeps both. The kept point is the largest value for
    numbers (for a counter, the later reading) and the last in store order for strings."""
    ts_us = s.ts_us
    values = s.value_str if s.is_string else s.value
    quality = s.quality
    dup = ts_us[1:] == ts_us[:-1]
    if np.any(dup):
        order = np.lexsort((np.arange(len(ts_us)) if s.is_string else values, ts_us))
        ts_us, values = ts_us[order], values[order]
        quality = quality[order] if quality is not None else None
        keep = np.concatenate((ts_us[1:] != ts_us[:-1], [True]))
        ts_us, values = ts_us[keep], values[keep]
        quality = quality[keep] if quality is not None else None
    ts = ts_us.astype(np.float64) / 1e6
    if quality is None:
        return Series(ts, values)
    bad = quality == "bad"
    if not np.any(bad):
        return Series(ts, values)
    return Series(ts[~bad], values[~bad], ts[bad])


def concat(parts: list[Series]) -> Series:
    """Series of consecutive, disjoint time chunks joined in order."""
    if len(parts) == 1:
        return parts[0]
    return Series(np.concatenate([p.ts for p in parts]), np.concatenate([p.values for p in parts]),
                  np.concatenate([p.bad_ts for p in parts]))


async def fetch(store: Store, scope: str, start: datetime, end: datetime, margin: timedelta, *,
                coverage_bucket: timedelta | None = timedelta(minutes=1),
                chunk: timedelta = timedelta(hours=6)) -> dict[str, MachineData]:
    """Raw KPI signals of every machine under ``scope`` over ``[start - margin, end + margin)``
    (the margin shows the state and counters at the window's edges and lets clock skew be seen),
    and, unless ``coverage_bucket`` is None, which buckets of every other signal of those machines
    hold samples. An asset with none of the KPI signals (e.g. ``<site>/fleet/agents/<id>``) is not a
    machine and is left out."""
    parts: dict[tuple[str, str], list[Series]] = {}
    lo, hi = start - margin, end + margin
    while lo < hi:  # in chunks, so that no single answer is huge (InfluxDB answers in one JSON body)
        nxt = min(lo + chunk, hi)
        q = SeriesQuery(asset=scope, start=lo, end=nxt, signals=KPI_SIGNALS, limit=MAX_POINTS)
        for s in await store.query(q):
            parts.setdefault((s.asset, s.signal), []).append(to_series(s))
        lo = nxt
    out: dict[str, MachineData] = {}
    for (asset, signal), series in parts.items():
        out.setdefault(asset, MachineData(asset)).signals[signal] = concat(series)
    if coverage_bucket is not None:
        cq = SeriesQuery(asset=scope, start=start, end=end, agg=Agg.COUNT, bucket=coverage_bucket,
                         limit=MAX_POINTS)
        for s in await store.query(cq):
            # Coverage is attached only to machines that carry KPI signals: other assets under the
            # scope (edge-fleet health, line stand-ins) are not machines and must not enter KPIs.
            md = out.get(s.asset)
            if md is not None and s.signal not in KPI_SIGNALS:
                md.coverage[s.signal] = s.ts_us.astype(np.float64) / 1e6
    return out
