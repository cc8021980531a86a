"""Reading KPI telemetry through ingest's ``Store`` protocol (any backend: DuckDB, InfluxDB).

Only the protocol and its data types are used, so every backend gives the same input and hence
the same KPIs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi.series import MachineData, Series
from ingest.storage.base import Series as StoreSeries
from ingest.storage.base import SeriesQuery, Store

MAX_POINTS = 50_000_000
"""Per-series point limit passed to the store: KPIs need every raw point, never a truncated series."""


def to_series(s: StoreSeries) -> Series:
    """A store series as engine input: float epoch seconds; bad-quality points set aside."""
    ts = s.ts_us.astype(np.float64) / 1e6
    values = s.value_str if s.is_string else s.value
    if s.quality is None:
        return Series(ts, values)
    bad = s.quality == "bad"
    if not np.any(bad):
        return Series(ts, values)
    return Series(ts[~bad], values[~bad], ts[bad])


async def fetch(store: Store, scope: str, start: datetime, end: datetime, margin: timedelta) -> dict[
        str, MachineData]:
    """Raw KPI signals of every machine under ``scope`` over ``[start - margin, end + margin)``
    (the margin shows the state and counters at the window's edges and lets clock skew be seen)."""
    q = SeriesQuery(asset=scope, start=start - margin, end=end + margin, signals=KPI_SIGNALS,
                    limit=MAX_POINTS)
    out: dict[str, MachineData] = {}
    for s in await store.query(q):
        out.setdefault(s.asset, MachineData(s.asset)).signals[s.signal] = to_series(s)
    return out
