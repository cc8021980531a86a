"""DuckDB bucketed reads: a bucket's "last" columns — value type, string value, unit, and the value
of ``last`` — all come from its newest sample, together (as the catalogue's do).

They were read with ``arg_max``, which skips NULLs: a bucket whose newest sample has no unit
reported an older sample's unit (the raw read of the same samples says none), one whose newest
sample is a string kept an older number in ``value`` (``Series.value`` is NaN where the point is a
string), and each column could come from another row of the newest timestamp. Now
``arg_max_null`` per column, which keeps the newest row's NULL and, on equal timestamps, the same
row for every column (``tests/ingest/test_duckdb_catalogue.py`` checks that on the catalogue).
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.storage.base import Agg, SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from tests.ingest.conftest import M1, T0, sample
from zhizao.model import Value

ROWS = 300_000


def _q(agg: Agg | None, signal: str, seconds: int = 10) -> SeriesQuery:
    return SeriesQuery(str(M1), T0, T0 + timedelta(seconds=seconds), signals=(signal,), agg=agg,
                       bucket=timedelta(seconds=seconds))


@pytest.mark.parametrize("agg", list(Agg))
async def test_a_bucket_whose_newest_sample_has_no_unit_has_none(tmp_path: Path, agg: Agg) -> None:
    """power in kW for 9 s, then one sample without a unit: one 10-s bucket, unit none — as the raw
    read (and the catalogue) of the same samples say."""
    frame = SampleFrame.from_samples([*(sample(M1, "power", i, float(i), "kW") for i in range(9)),
                                      sample(M1, "power", 9, 90.0)])
    async with DuckDBStore(tmp_path / "s.duckdb") as store:
        await store.write(frame)
        raw = await store.query(_q(None, "power"))
        [bucketed] = await store.query(_q(agg, "power"))
        assert raw[0].unit is None
        assert bucketed.unit is None, (agg, bucketed)
        if agg is Agg.LAST:
            assert bucketed.values() == [90.0]


@pytest.mark.parametrize(("older", "newest"), [(1.5, "RUN"), ("RUN", 2.5), (True, 7)])
async def test_last_of_a_bucket_of_mixed_types_is_its_newest_sample(
        tmp_path: Path, older: Value, newest: Value) -> None:
    """A signal whose value type changed inside a bucket: ``last`` is the newest sample, and the
    arrays say so — ``value`` NaN for a string, ``value_str`` None for a number."""
    frame = SampleFrame.from_samples([sample(M1, "mode", 1, older, "x"), sample(M1, "mode", 5, newest, "y")])
    async with DuckDBStore(tmp_path / "s.duckdb") as store:
        await store.write(frame)
        [s] = await store.query(_q(Agg.LAST, "mode"))
    assert s.values() == [newest] and s.unit == "y"
    if isinstance(newest, str):
        assert math.isnan(s.value[0]) and s.value_str[0] == newest
    else:
        assert s.value[0] == float(newest) and s.value_str[0] is None


async def test_ties_at_a_buckets_newest_timestamp_give_one_rows_columns(tmp_path: Path) -> None:
    """Thousands of rows sharing a bucket's newest timestamp (enough for DuckDB to aggregate in
    parallel), each with its own value, unit and type: ``last``'s value, its type and the unit all
    name the same row."""
    frame = SampleFrame()
    for k in range(ROWS):
        value: float | str = str(k) if k % 5 == 0 else float(k)
        frame.append_raw(str(M1), f"s{k % 3}", int(T0.timestamp()) * 1_000_000 + (k * 7919 % 4 != 0),
                         value, unit=None if k % 3 == 1 else f"u{k}", quality="good")
    async with DuckDBStore(tmp_path / "ties.duckdb") as store:
        await store.write(frame)
        for i in range(3):
            [s] = await store.query(_q(Agg.LAST, f"s{i}"))
            [last] = s.values()
            assert last is not None
            k = int(last)
            assert k % 3 == i and isinstance(last, str) == (k % 5 == 0), s
            assert s.unit == (None if k % 3 == 1 else f"u{k}"), (k, s.unit)
            assert k * 7919 % 4 != 0, f"{k}: not a row of the newest timestamp"
