"""Generated samples into an ingest store (``zhizao sim generate --duckdb FILE``).

The samples go through ingest's own DuckDB store class (:class:`ingest.storage.duckdb.store.DuckDBStore`,
``write(SampleFrame.from_samples(...))``, as the ingest service and the KPI tests write), so the
file is exactly what ``zhizao ingest`` would have written and every ``zhizao analytics`` command
and the read API read it. An existing file is appended to; a file that already holds samples of the
run's site/area inside the run's time range is refused (:class:`AlreadyStored`) before anything is
written, because the store keeps every sample it is given: the same run loaded twice would count
every part and kWh twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from zhizao.model import Sample
from zhizao.wire import format_ts

CHUNK = 100_000
"""Samples per store write (one transaction each)."""


class AlreadyStored(Exception):
    """The store already holds samples of the run's scope inside the run's range."""


async def load_samples(
    path: str | Path, samples: Iterable[Sample], *, scope: str, start: datetime, end: datetime
) -> int:
    """Append ``samples`` (a run of ``scope`` = ``site/area`` over ``[start, end)``) to the DuckDB
    store ``path`` (created with its schema if missing); the number written. ``AlreadyStored`` if
    the file already has a ``state`` sample of ``scope`` in ``[start, end)`` (nothing written);
    ``zhizao.errors.StoreUnavailable`` if the file cannot be opened (not DuckDB, locked by a running
    ingest) or written."""
    from ingest.storage.base import SampleFrame, SeriesQuery
    from ingest.storage.duckdb.store import DuckDBStore

    async with DuckDBStore(path) as store:
        held = await store.query(SeriesQuery(scope, start, end, signals=("state",), limit=1))
        hit = [s for s in held if len(s)]
        if hit:
            raise AlreadyStored(
                f"{path} already holds samples of {scope} between {format_ts(start)} and "
                f"{format_ts(end)} (e.g. {hit[0].asset}): this run was generated into it before? "
                "Loading it again would count its parts and energy twice; use a new file, or --start "
                "for another period"
            )
        n = 0
        batch: list[Sample] = []
        for s in samples:
            batch.append(s)
            if len(batch) >= CHUNK:
                n += (await store.write(SampleFrame.from_samples(batch))).accepted
                batch = []
        if batch:
            n += (await store.write(SampleFrame.from_samples(batch))).accepted
    return n
