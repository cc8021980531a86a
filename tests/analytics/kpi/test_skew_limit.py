"""The documented limit of clock-skew detection (analytics/kpi/README.md, "Data quality"), over a
real DuckDB store: a clock running ahead by O seconds for D <= O seconds leaves the same series a
D-second telemetry loss leaves, so it is flagged ``telemetry_gap``, not ``clock_skew``; a longer
skew (D > O) is flagged ``clock_skew`` with both jumps (review 70)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from zhizao.model import Sample

SKEW_AT = 1000.0
"""Seconds after the shift's start when the machine's clock jumps ahead (a running stretch)."""


def _skewed(offset_s: float, duration_s: float) -> list[Sample]:
    """The hand-made hour with every sample taken in [SKEW_AT, SKEW_AT + duration_s) stamped
    ``offset_s`` late (what the simulator's clock_skew fault does)."""
    lo, hi = T0 + timedelta(seconds=SKEW_AT), T0 + timedelta(seconds=SKEW_AT + duration_s)
    return [replace(s, ts=s.ts + timedelta(seconds=offset_s)) if lo <= s.ts < hi else s for s in _shift()]


async def _flags(tmp_path: Path, samples: list[Sample]) -> tuple[dict[str, dict[str, Any]], int]:
    """The machine's flags by kind:signal, and how many energy instants the DuckDB store holds twice."""
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await store.write(SampleFrame.from_samples(samples))
        rep = await kpi_report(store, PLANT, KpiConfig(), "p", start=T0, end=T0 + timedelta(hours=1),
                               group_by=GroupBy.MACHINE)
        (energy,) = await store.query(SeriesQuery(asset="p/a/l/m1", start=T0 - timedelta(minutes=5),
                                                  end=T0 + timedelta(hours=2), signals=("energy_kwh",)))
    dup = int(np.count_nonzero(np.diff(np.sort(energy.ts_us)) == 0))
    (m,) = rep["windows"][0]["machines"]
    return {f["kind"] + ":" + str(f.get("signal", "")): f for f in m["data_quality"]["flags"]}, dup


async def test_an_ahead_skew_no_longer_than_its_offset_reads_as_a_telemetry_gap(tmp_path: Path) -> None:
    """60 s at +90 s: every skewed sample lands at or after the skew's end, on instants the
    corrected clock reports again; only DuckDB keeps both points of such an instant (InfluxDB one)
    and the KPIs read one per instant, so what is left is the series of a 60-s loss."""
    flags, dup = await _flags(tmp_path, _skewed(90.0, 60.0))
    assert dup == 60  # the only trace, in DuckDB alone: same-instant energy readings
    # The state's 120-s silence holds its last value for the gap threshold (90 s), then is unknown.
    assert set(flags) == {"telemetry_gap:state", "telemetry_gap:parts_total", "unknown_state:"}
    assert flags["telemetry_gap:state"]["gap_s"] == 120.0
    assert flags["unknown_state:"]["unknown_time_s"] == 30.0


async def test_an_ahead_skew_longer_than_its_offset_is_flagged_clock_skew(tmp_path: Path) -> None:
    flags, _ = await _flags(tmp_path, _skewed(90.0, 300.0))
    jumps = flags["clock_skew:"]["jumps"]
    assert [round(j["offset_s"]) for j in jumps] == [90, -90]
