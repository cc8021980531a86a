"""DuckDB store: embedded, one file, bulk inserts through Arrow, group commit on one writer thread.

Concurrency contract: DuckDB is single-writer, so every write goes through one connection on
one dedicated thread (:mod:`ingest.storage.duckdb.writer`). Concurrent ``write`` calls are
queued and committed together (group commit): one transaction inserts all new samples as one
Arrow table and records their batch ids — all or nothing. Reads run on their own cursors in
worker threads and see committed data only. The event loop never blocks.

Stopping a write (:meth:`DuckDBStore.abort_writes`, the service's write timeout for writes without
a batch id): a queued write is taken out of the queue; the group holding it, if handed to the
writer thread, is marked — not started if it has not started yet, else its transaction is
interrupted (``connection.interrupt()``: the running statement fails, the transaction is rolled
back; a stop that comes after the last statement but before ``COMMIT`` is seen there) — and the
group's other writes are queued again, to commit in the next group. A stop that comes too late
(the ``COMMIT`` ran) changes nothing: the write answers its commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

import duckdb

from ingest.storage.base import (
    BatchKey,
    CatalogueEntry,
    EventQuery,
    LatestValue,
    SampleFrame,
    Series,
    SeriesQuery,
    WriteResult,
    decode_value,
    from_us,
)
from ingest.storage.duckdb.reads import naive as _naive
from ingest.storage.duckdb.reads import run_query
from ingest.storage.duckdb.schema import DDL
from ingest.storage.duckdb.writer import Stopped, Writer, WriteRequest, frame_to_arrow
from ingest.storage.events_common import event_matches
from zhizao.errors import StoreUnavailable
from zhizao.events import Event
from zhizao.model import Quality, check_asset_prefix

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["DuckDBStore", "frame_to_arrow"]


class _Group:
    """Writes handed to the writer thread as one transaction. ``stopped`` is set on the event loop,
    ``running`` on the writer thread, both under the store's ``_stop_lock``."""

    __slots__ = ("requests", "running", "stopped", "waiters")

    def __init__(self, pending: list[tuple[WriteRequest, asyncio.Future[WriteResult]]]) -> None:
        self.requests = [r for r, _ in pending]
        self.waiters = pending
        self.stopped: set[int] = set()
        """``id`` of each frame whose write was stopped (:meth:`DuckDBStore.abort_writes`)."""
        self.running = False

class DuckDBStore:
    """The embedded store. ``path`` is a file (created with its schema) or ``":memory:"``."""

    name = "duckdb"

    def __init__(self, path: str | Path, *, memory_limit: str | None = None) -> None:
        self.path = str(path)
        self._memory_limit = memory_limit
        self._con: duckdb.DuckDBPyConnection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")
        self._closed = False
        self._writer_state: Writer | None = None
        self._pending: list[tuple[WriteRequest, asyncio.Future[WriteResult]]] = []
        self._flushing = False
        self._flush_task: asyncio.Task[None] | None = None
        self._group: _Group | None = None
        """The group handed to the writer thread (queued there or committing), if any."""
        self._stop_lock = threading.Lock()

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
            self._writer_state = Writer(self._con)
            self._writer_state.open()
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open DuckDB file {self.path}: {exc}") from exc

    def _close(self) -> None:
        if self._con is not None:
            if self._writer_state is not None:
                self._writer_state.close()
            self._con.close()
            self._con = None

    @property
    def writer(self) -> Writer:
        if self._writer_state is None:
            raise StoreUnavailable("DuckDB store is not open")
        return self._writer_state

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
        self._pending.append((WriteRequest(frame, key), future))
        if not self._flushing:
            self._flushing = True
            self._flush_task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group = self._group = _Group(self._pending)
                self._pending = []
                try:
                    results = await loop.run_in_executor(self._writer, self._commit, group)
                except Stopped as exc:  # nothing committed: fail the stopped writes, retry the others
                    again = [(r, fut) for r, fut in group.waiters if id(r.frame) not in group.stopped]
                    for r, fut in group.waiters:
                        if id(r.frame) in group.stopped and not fut.done():
                            fut.set_exception(StoreUnavailable(str(exc)))
                    self._pending[:0] = [(r, fut) for r, fut in again if not fut.done()]
                    continue
                except Exception as exc:  # noqa: BLE001 - every waiter must get an answer, never hang
                    for _, fut in group.waiters:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                finally:
                    self._group = None
                for (_, fut), res in zip(group.waiters, results, strict=True):
                    if not fut.done():
                        fut.set_result(res)
        finally:
            self._flushing = False

    def abort_writes(self, frames: Sequence[SampleFrame]) -> None:
        """Stop the writes of ``frames`` (module docstring; :class:`~ingest.storage.base.Abortable`)."""
        ids = {id(f) for f in frames}
        stopped = StoreUnavailable("DuckDB write stopped before it started: nothing of it was committed")
        keep: list[tuple[WriteRequest, asyncio.Future[WriteResult]]] = []
        for req, fut in self._pending:
            if id(req.frame) not in ids:
                keep.append((req, fut))
            elif not fut.done():
                fut.set_exception(stopped)
        self._pending = keep
        group = self._group
        if group is None:
            return
        hit = ids.intersection(id(r.frame) for r in group.requests)
        if not hit:
            return
        with self._stop_lock:
            group.stopped |= hit
            if group.running and self._con is not None:
                self._con.interrupt()  # the statement running fails; a later one sees ``stopped``

    def _commit(self, group: _Group) -> list[WriteResult]:
        with self._stop_lock:
            if group.stopped:
                raise Stopped("DuckDB write stopped before it started: nothing of it was committed")
            group.running = True
        writer = self.writer
        writer.stop = lambda: bool(group.stopped)
        try:
            return writer.commit(group.requests)
        except Stopped as exc:
            raise Stopped(f"DuckDB write {exc}: nothing of it was committed") from None
        except duckdb.Error as exc:
            if group.stopped:
                raise Stopped(f"DuckDB write stopped and rolled back, nothing of it was committed "
                               f"({type(exc).__name__}: {exc})") from exc
            raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
        finally:
            writer.stop = None
            with self._stop_lock:
                group.running = False

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread (after every write queued before it)."""
        def run() -> T:
            try:
                return fn()
            except duckdb.Error as exc:
                raise StoreUnavailable(f"DuckDB write failed: {exc}") from exc
        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def seen(self, key: BatchKey) -> WriteResult | None:
        accepted = await self._on_writer(lambda: self.writer.seen(key))
        return None if accepted is None else WriteResult(accepted, duplicate=True)

    async def delete_before(self, cutoff: datetime) -> None:
        await self._on_writer(lambda: self.con.execute("DELETE FROM samples WHERE ts < ?", [_naive(cutoff)]))

    async def prune_dedup(self, max_age: timedelta, max_entries: int) -> None:
        await self._on_writer(lambda: self.writer.prune(max_age, max_entries))

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
        series: list[Series] = await self._read(lambda cur: run_query(cur, q))
        return series

    async def latest(self, asset: str) -> list[LatestValue]:
        await self._on_writer(self.writer.flush_catalogue)
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
        await self._on_writer(self.writer.flush_catalogue)
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
