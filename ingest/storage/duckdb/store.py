"""DuckDB store: embedded, one file, bulk inserts through Arrow, group commit on one writer thread.

Concurrency contract: DuckDB is single-writer, so every write goes through one connection on
one dedicated thread. Concurrent ``write`` calls are queued and committed together (group
commit): one transaction checks the dedup records, inserts all new samples as one Arrow table,
upserts the catalogue and records the batch ids — all or nothing. Reads run on their own
cursors in worker threads and see committed data only. The event loop never blocks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import duckdb
import numpy as np
import pyarrow as pa

from ingest.storage.base import (
    Agg,
    BatchKey,
    CatalogueEntry,
    EventQuery,
    LatestValue,
    SampleFrame,
    Series,
    SeriesQuery,
    WriteResult,
    check_asset_prefix,
    decode_value,
    from_us,
)
from ingest.storage.duckdb.schema import COLUMNS, DDL, UPSERT_SIGNALS
from ingest.storage.events_common import event_matches
from zhizao.errors import StoreUnavailable
from zhizao.events import Event
from zhizao.model import Quality

log = logging.getLogger(__name__)

_SCHEMA = pa.schema([
    ("ts", pa.timestamp("us")), ("asset", pa.string()), ("signal", pa.string()), ("vtype", pa.string()),
    ("value", pa.float64()), ("value_str", pa.string()), ("unit", pa.string()), ("quality", pa.string()),
])


def frame_to_arrow(frame: SampleFrame) -> pa.Table:
    """The Arrow table of ``frame`` with the ``samples`` column order."""
    return pa.Table.from_arrays([
        pa.array(frame.ts_us, pa.timestamp("us")), pa.array(frame.asset, pa.string()),
        pa.array(frame.signal, pa.string()), pa.array(frame.vtype, pa.string()),
        pa.array(frame.value, pa.float64()), pa.array(frame.value_str, pa.string()),
        pa.array(frame.unit, pa.string()), pa.array(frame.quality, pa.string()),
    ], schema=_SCHEMA)


@dataclass(slots=True)
class _Pending:
    frame: SampleFrame
    key: BatchKey | None
    future: asyncio.Future[WriteResult]


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


class DuckDBStore:
    """The embedded store. ``path`` is a file (created with its schema) or ``":memory:"``."""

    name = "duckdb"

    def __init__(self, path: str | Path, *, memory_limit: str | None = None) -> None:
        self.path = str(path)
        self._memory_limit = memory_limit
        self._con: duckdb.DuckDBPyConnection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self._closed = False
        self._pending: list[_Pending] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Wait for queued writes, close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task = self._flush_task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await task  # queued writes of this loop first; the writer thread is FIFO for the rest
        await asyncio.get_running_loop().run_in_executor(self._writer, self._close)
        self._writer.shutdown(wait=True)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self._memory_limit:
            config["memory_limit"] = self._memory_limit
        try:
            self._con = duckdb.connect(self.path, config=config)
            for ddl in DDL:
                self._con.execute(ddl)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB file {self.path}: {exc}") from exc

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreUnavailable("DuckDB store is not open")
        return self._con

    # ---- write path -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read(lambda cur: cur.execute("SELECT 1").fetchall())

    async def write(self, frame: SampleFrame, key: BatchKey | None = None) -> WriteResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        self._pending.append(_Pending(frame, key, future))
        if not self._flushing:
            self._flushing = True
            self._flush_task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                try:
                    results = await loop.run_in_executor(self._writer, self._commit, group)
                except StoreUnavailable as exc:
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, r in zip(group, results, strict=True):
                    if not p.future.done():
                        p.future.set_result(r)
        finally:
            self._flushing = False

    def _commit(self, group: list[_Pending]) -> list[WriteResult]:
        con = self.con
        try:
            con.execute("BEGIN TRANSACTION")
            try:
                results = self._commit_in_tx(con, group)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except duckdb.Error as exc:
            raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
        return results

    def _commit_in_tx(self, con: duckdb.DuckDBPyConnection, group: list[_Pending]) -> list[WriteResult]:
        results: list[WriteResult] = []
        seen_now: dict[BatchKey, int] = {}
        frames: list[SampleFrame] = []
        new_keys: list[tuple[str, str, int]] = []
        for p in group:
            prev: int | None = None
            if p.key is not None:
                prev = seen_now.get(p.key)
                if prev is None:
                    row = con.execute("SELECT accepted FROM batches WHERE producer = ? AND batch_id = ?",
                                      [p.key.producer, p.key.batch_id]).fetchone()
                    prev = None if row is None else int(row[0])
            if prev is not None:
                results.append(WriteResult(prev, duplicate=True))
                continue
            if p.key is not None:
                seen_now[p.key] = len(p.frame)
                new_keys.append((p.key.producer, p.key.batch_id, len(p.frame)))
            frames.append(p.frame)
            results.append(WriteResult(len(p.frame)))
        if len(frames) > 1:
            combined = SampleFrame()
            for f in frames:
                combined.extend(f)
            frames = [combined]
        if frames and len(frames[0]):
            con.register("_zz_frame", frame_to_arrow(frames[0]))
            try:
                con.execute(f"INSERT INTO samples SELECT {', '.join(COLUMNS)} FROM _zz_frame")
                con.execute(UPSERT_SIGNALS)
            finally:
                con.unregister("_zz_frame")
        if new_keys:
            now = datetime.now(UTC).replace(tzinfo=None)
            keys = pa.table({"producer": [k[0] for k in new_keys], "batch_id": [k[1] for k in new_keys],
                             "accepted": pa.array([k[2] for k in new_keys], pa.int64()),
                             "received": pa.array([now] * len(new_keys), pa.timestamp("us"))})
            con.register("_zz_keys", keys)
            try:
                con.execute("INSERT INTO batches SELECT producer, batch_id, accepted, received FROM _zz_keys")
            finally:
                con.unregister("_zz_keys")
        return results

    async def seen(self, key: BatchKey) -> WriteResult | None:
        rows = await self._read(lambda cur: cur.execute(
            "SELECT accepted FROM batches WHERE producer = ? AND batch_id = ?",
            [key.producer, key.batch_id]).fetchall())
        return WriteResult(int(rows[0][0]), duplicate=True) if rows else None

    async def _on_writer(self, sql: str, params: list[Any]) -> None:
        def run() -> None:
            try:
                self.con.execute(sql, params)
            except duckdb.Error as exc:
                raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
        await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def delete_before(self, cutoff: datetime) -> None:
        await self._on_writer("DELETE FROM samples WHERE ts < ?", [_naive(cutoff)])

    async def prune_dedup(self, max_age: timedelta, max_entries: int) -> None:
        cutoff = datetime.now(UTC).replace(tzinfo=None) - max_age
        await self._on_writer("DELETE FROM batches WHERE received < ?", [cutoff])
        await self._on_writer(
            "DELETE FROM batches WHERE (producer, batch_id) IN (SELECT producer, batch_id FROM batches "
            "ORDER BY received DESC OFFSET ?)", [max_entries])

    # ---- read path --------------------------------------------------------------------------

    async def _read(self, fn: Any) -> Any:
        def run() -> Any:
            cur = self.con.cursor()
            try:
                return fn(cur)
            except duckdb.Error as exc:
                raise StoreUnavailable(f"DuckDB query failed: {exc}") from exc
            finally:
                cur.close()
        return await asyncio.to_thread(run)

    async def query(self, q: SeriesQuery) -> list[Series]:
        sql, params = _series_sql(q)
        table: pa.Table = await self._read(lambda cur: cur.sql(sql, params=params).to_arrow_table())
        return _split_series(table, bucketed=q.agg is not None)

    async def latest(self, asset: str) -> list[LatestValue]:
        rows = await self._read(lambda cur: cur.execute(
            "SELECT signal, epoch_us(ts), vtype, value, value_str, unit, quality FROM signals "
            "WHERE asset = ? ORDER BY signal", [asset]).fetchall())
        out = []
        for signal, ts, vtype, value, value_str, unit, quality in rows:
            v = decode_value(vtype, value, value_str)
            if v is not None:
                out.append(LatestValue(signal, from_us(ts), v, unit, Quality(quality)))
        return out

    async def catalogue(self, prefix: str | None = None) -> list[CatalogueEntry]:
        where, params = "", list[Any]()
        if prefix:
            check_asset_prefix(prefix)
            where, params = "WHERE asset = ? OR starts_with(asset, ?)", [prefix, prefix + "/"]
        rows = await self._read(lambda cur: cur.execute(
            f"SELECT asset, signal, unit, vtype, epoch_us(ts) FROM signals {where} ORDER BY asset, signal",
            params).fetchall())
        return [CatalogueEntry(a, s, u, t, from_us(ts)) for a, s, u, t, ts in rows]

    async def upsert_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        def run() -> None:
            con = self.con
            try:
                con.execute("BEGIN TRANSACTION")
                for e in events:
                    con.execute(
                        "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [e.id, e.source.value, e.state.value, e.asset, _naive(e.start),
                         None if e.end is None else _naive(e.end), e.model_dump_json()])
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
        await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def query_events(self, q: EventQuery) -> list[Event]:
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if q.asset:
            clauses.append("(asset = ? OR starts_with(asset, ?))")
            params += [q.asset, q.asset + "/"]
        if q.end is not None:
            clauses.append("start < ?")
            params.append(_naive(q.end))
        if q.start is not None:
            clauses.append('("end" IS NULL OR "end" >= ?)')
            params.append(_naive(q.start))
        if q.state is not None:
            clauses.append("state = ?")
            params.append(q.state.value)
        if q.source is not None:
            clauses.append("source = ?")
            params.append(q.source.value)
        sql = f"SELECT doc FROM events WHERE {' AND '.join(clauses)} ORDER BY start DESC, id LIMIT {q.limit}"
        rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
        events = [Event.model_validate_json(r[0]) for r in rows]
        return [e for e in events if event_matches(e, q)]


def _series_sql(q: SeriesQuery) -> tuple[str, list[Any]]:
    where = ["ts >= ?", "ts < ?", "(asset = ? OR starts_with(asset, ?))"]
    params: list[Any] = [_naive(q.start), _naive(q.end), q.asset, q.asset + "/"]
    if q.signals:
        where.append(f"signal IN ({', '.join('?' for _ in q.signals)})")
        params += list(q.signals)
    cond = " AND ".join(where)
    if q.agg is None:
        return (
            "SELECT asset, signal, epoch_us(ts) AS t, vtype, value, value_str, unit, quality "
            f"FROM samples WHERE {cond} "
            f"QUALIFY row_number() OVER (PARTITION BY asset, signal ORDER BY ts) <= {int(q.limit)} "
            "ORDER BY asset, signal, t", params)
    b = q.bucket_us()
    agg = {
        Agg.MEAN: "avg(value)", Agg.MIN: "min(value)", Agg.MAX: "max(value)",
        Agg.LAST: "arg_max(value, ts)", Agg.COUNT: "count(*)",
    }[q.agg]
    if q.agg is Agg.COUNT:
        vtype, vstr = "'i'", "NULL"
    elif q.agg is Agg.MEAN:
        vtype, vstr = "CASE WHEN arg_max(vtype, ts) = 's' THEN 's' ELSE 'f' END", "arg_max(value_str, ts)"
    else:
        vtype, vstr = "arg_max(vtype, ts)", "arg_max(value_str, ts)"
    return (
        f"SELECT asset, signal, (epoch_us(ts) // {b}) * {b} AS t, {vtype} AS vtype, {agg} AS value, "
        f"{vstr} AS value_str, arg_max(unit, ts) AS unit, NULL AS quality "
        f"FROM samples WHERE {cond} GROUP BY asset, signal, t "
        f"QUALIFY row_number() OVER (PARTITION BY asset, signal ORDER BY t) <= {int(q.limit)} "
        "ORDER BY asset, signal, t", params)


def _split_series(table: pa.Table, *, bucketed: bool) -> list[Series]:
    n = table.num_rows
    if n == 0:
        return []
    assets = table.column("asset").to_numpy(zero_copy_only=False)
    signals = table.column("signal").to_numpy(zero_copy_only=False)
    change = np.flatnonzero((assets[1:] != assets[:-1]) | (signals[1:] != signals[:-1])) + 1
    bounds = [0, *change.tolist(), n]
    ts = table.column("t").to_numpy().astype(np.int64)
    value = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    value_str = table.column("value_str").to_numpy(zero_copy_only=False).astype(object)
    vtype = table.column("vtype").to_numpy(zero_copy_only=False).astype(str)
    quality = None if bucketed else table.column("quality").to_numpy(zero_copy_only=False).astype(str)
    units = table.column("unit")
    out = []
    for lo, hi in itertools.pairwise(bounds):
        out.append(Series(
            str(assets[lo]), str(signals[lo]), units[hi - 1].as_py(), ts[lo:hi], value[lo:hi],
            value_str[lo:hi], vtype[lo:hi], None if quality is None else quality[lo:hi]))
    return out
