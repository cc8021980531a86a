"""The DuckDB catalogue (``signals``): latest value, unit and quality of a series from one row.

``UPSERT_SIGNALS`` takes each column with its own ``arg_max_null`` (cheaper than one over a
struct of them). That is right only while DuckDB gives every aggregate of one ``GROUP BY`` the
same row on equal timestamps — DuckDB keeps samples of the same series and time, so ties happen.
A frame large enough to be aggregated in parallel, whose newest timestamp is shared by thousands
of rows each with its own value, unit and quality, must still give one row's three together;
and the rebuild after a crash (the same statement over ``samples``) too.
"""

from __future__ import annotations

from pathlib import Path

from ingest.storage.base import LatestValue, SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.ingest.conftest import M1

ROWS = 300_000
QUALITIES = ("good", "uncertain", "bad")


def _tied_frame() -> SampleFrame:
    """Three series; each row ``k`` at one of two timestamps (most rows share the newest), a value
    naming ``k`` (a float, or a string every 5th row), a unit naming ``k`` (none every 3rd row) and
    quality ``QUALITIES[k % 3]``."""
    frame = SampleFrame()
    for k in range(ROWS):
        value: float | str = str(k) if k % 5 == 0 else float(k)
        frame.append_raw(str(M1), f"s{k % 3}", 1_800_000_000_000_000 + (k * 7919 % 4 != 0),
                         value, unit=None if k % 3 == 1 else f"u{k}", quality=QUALITIES[k % 3])
    return frame


def _check(latest: list[LatestValue]) -> None:
    assert [v.signal for v in latest] == ["s0", "s1", "s2"]
    for v in latest:
        k = int(v.value)
        assert int(v.signal[1:]) == k % 3, v
        assert isinstance(v.value, str) == (k % 5 == 0), v
        assert v.unit == (None if k % 3 == 1 else f"u{k}"), v
        assert v.quality.value == QUALITIES[k % 3], v
        assert k * 7919 % 4 != 0, f"{v}: not a row of the newest timestamp"


async def test_ties_at_the_newest_timestamp_give_one_rows_value_unit_and_quality(tmp_path: Path) -> None:
    path = tmp_path / "ties.duckdb"
    async with DuckDBStore(path) as store:
        assert (await store.write(_tied_frame())).accepted == ROWS
        _check(await store.latest(str(M1)))
        store._writer_state = None  # closed as after a crash: not marked clean, so the next open
    async with DuckDBStore(path) as store:  # rebuilds the catalogue from every stored sample
        _check(await store.latest(str(M1)))
