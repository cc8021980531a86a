"""The durable store-and-forward buffer: SQLite in WAL mode, group commit, stable batch ids.

Contract (one producer of samples, any number of ``put`` callers, one or more uplinks):

- ``await put(samples)`` returns once the samples are committed to disk (or dropped by the
  overflow policy — the returned :class:`PutResult` says how many). Concurrent puts within one
  ``commit_interval`` share one transaction and one fsync (group commit). ``submit`` is the
  non-blocking form: it returns a future resolved at commit, so a connector can acknowledge a
  message upstream (MQTT PUBACK) only after its samples are durable.
- ``await take(max_items, linger)`` returns the oldest batch not currently taken by this
  process, or ``None`` after ``linger`` seconds with nothing to send. Several batches may be
  taken (in flight) at once; a ``take`` cancelled mid-way hands nothing out. A new batch is formed only
  when ``max_items`` samples are waiting or the oldest waiting one is ``linger`` seconds old.
  The batch (its id, seq and sample range) is persisted when formed: after a crash the same
  samples come back under the same ``batch_id``. Batches formed after an open take a nonce drawn
  at that open (``<nonce>-<seq>``): a buffer file restored from a snapshot or backup never hands
  out an id the receiver already stored for other samples.
- ``await ack(batch)`` deletes the batch and its samples; ``release(batch)`` hands it back
  un-acked (it will be taken again, same id).

Records (whole pre-encoded batches, see :class:`~edge_agent.buffer.encoded.EncodedBatch`): the
site gateway stores each agent batch as ONE record holding its wire-format document and its own
``(producer, batch_id, seq)``. ``submit_records``/``put_records`` commit them with the same group
commit (and the same ``PutResult``, counted in samples; ``submit_records`` takes marks as ``submit``
does, committed in the same transaction); ``take_bulk`` hands out records — oldest
first, several at once up to :class:`~edge_agent.buffer.encoded.BulkLimits` — and, when there are
none, encoded batches formed from sample rows (as ``take_encoded``); ``ack``/``ack_many`` delete
exactly what was handed out (a record by its id), ``release`` hands it back (taken again first).
After a crash every record not acked is taken again, with its own identity. ``take`` and
``take_encoded`` serve sample rows only. Records count in the backlog (their samples and bytes),
in ``max_bytes`` (``drop_oldest`` drops sample rows first, then the oldest records not in flight)
and in ``max_age_s``.

Overflow: the buffer holds at most ``max_bytes`` of row data and samples at most ``max_age_s``
old. ``drop_oldest`` deletes the oldest un-taken data to make room; ``reject_new`` refuses
the new samples. Every drop is counted in :class:`BufferStats` (``dropped`` by reason) and
logged, once the transaction holding it has committed (a failed commit, e.g. disk full, drops
nothing and leaves every counter as it was). Ages are measured by the wall clock, corrected for
its steps (:mod:`edge_agent.buffer.clock`): a step seen while running, or one made while the
buffer was closed in the same boot (measured against ``CLOCK_BOOTTIME`` from the clocks' reading
kept with each commit and at close), neither ages nor rejuvenates what is buffered — one WARNING
names it, ``stats.clock_steps`` counts it. After a reboot the time elapsed is unknown: a wall
clock earlier than at the last use is reported (``backward_after_reboot``), nothing re-aged.
The clocks are read through :class:`~edge_agent.buffer.clock.Clocks` (``clocks=``, a seam for
tests). A damaged database is detected at open
(``PRAGMA quick_check``); with ``on_corrupt="quarantine"`` it is moved aside, reported and a
fresh one started.

All SQLite work runs on one dedicated thread; the asyncio API may be used from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

from edge_agent.buffer.clock import (
    STEP_KINDS,
    ClockReading,
    Clocks,
    RestartStep,
    StepDetector,
    step_since,
    system_wall,
)
from edge_agent.buffer.codec import SampleDecoder, SeriesKey, encode_samples, row_series
from edge_agent.buffer.encoded import BulkLimits, EncodedBatch
from edge_agent.buffer.sqlite import BufferCorrupt, Db, RecordRow, open_db
from zhizao.model import Batch, Sample
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)

Overflow = Literal["drop_oldest", "reject_new"]


@dataclass(frozen=True, slots=True)
class PutResult:
    """What happened to the samples of one ``put``: ``committed`` + ``rejected`` = len(samples)."""

    committed: int
    rejected: int = 0


@dataclass(slots=True)
class BufferStats:
    """Counters since the buffer was opened, and the current backlog (exported as metrics)."""

    committed: int = 0
    acked: int = 0
    batches_acked: int = 0
    commits: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"overflow": 0, "expired": 0, "rejected": 0})
    corrupt_rows: int = 0
    corruptions: int = 0
    backlog_samples: int = 0
    """Samples waiting: in sample rows and in records."""
    backlog_record_samples: int = 0
    """Of ``backlog_samples``, those held in records."""
    backlog_records: int = 0
    backlog_bytes: int = 0
    oldest_created: float | None = None
    clock_steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEP_KINDS, 0))
    """Steps of the wall clock noticed, by kind (:data:`~edge_agent.buffer.clock.STEP_KINDS`):
    ``forward``/``backward`` measured and corrected (while running, or across a restart in the
    same boot), ``backward_after_reboot`` reported only."""
    last_clock_step_s: float = 0.0
    """The last of them, signed (seconds; 0 when none)."""
    wall: Callable[[], float] = field(default=system_wall, repr=False, compare=False)
    """The wall clock :meth:`backlog_age` reads (the buffer's)."""

    def backlog_age(self, now: float | None = None) -> float:
        """Seconds since the oldest sample still in the buffer was committed (0 when empty), on
        the buffer's corrected clock (see :mod:`edge_agent.buffer.clock`)."""
        if self.oldest_created is None:
            return 0.0
        return max(0.0, (now if now is not None else self.wall()) - self.oldest_created)


_Record = tuple[str, str, int, int, bytes]  # producer, batch_id, seq, n, document
_T = TypeVar("_T")


@dataclass(slots=True)
class _Delta:
    """What one operation in the buffer's thread did to the counters, and the backlog right
    after it. Operations run one at a time on that thread; each delta is added to
    :class:`BufferStats` on the event loop in the order the operations finished, so ``stats``
    always describes the buffer after some whole operation: ``committed`` is never ahead of
    ``backlog_samples``, nor ``backlog_samples`` behind ``acked``."""

    committed: int = 0
    commits: int = 0
    acked: int = 0
    batches_acked: int = 0
    expired: int = 0
    overflow: int = 0
    rejected: int = 0
    corrupt_rows: int = 0
    clock_step: tuple[str, float] | None = None
    """A step of the wall clock reported by the operation: ``(kind, signed seconds)``."""
    backlog: tuple[int, int, int, int, float | None] | None = None
    """``(samples, record samples, records, bytes, oldest created)``, read after the operation."""

    def read_backlog(self, db: Db) -> None:
        self.backlog = (
            db.count_total + db.rec_samples, db.rec_samples, db.rec_count, db.total_bytes,
            db.oldest_created_cached,
        )


@dataclass
class _Pending:
    rows: list[bytes]
    future: asyncio.Future[PutResult]
    marks: dict[str, str] | None = None
    records: list[_Record] | None = None


class SqliteBuffer:
    """See the module docstring. Use as ``async with SqliteBuffer(path, producer) as buf``."""

    def __init__(
        self,
        path: str | Path,
        producer: str,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 7 * 86400.0,
        overflow: Overflow = "drop_oldest",
        commit_interval: float = 0.1,
        commit_max_samples: int = 20_000,
        synchronous: Literal["normal", "full"] = "full",
        on_corrupt: Literal["quarantine", "fail"] = "quarantine",
        group_series: bool = False,
        clocks: Clocks | None = None,
    ) -> None:
        """``clocks``: the wall, steady and boot-id clocks (default: the system's; see
        :mod:`edge_agent.buffer.clock`)."""
        self.path = Path(path)
        self.producer = producer
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.overflow: Overflow = overflow
        self.commit_interval = commit_interval
        self.commit_max_samples = commit_max_samples
        self.synchronous = synchronous
        self.on_corrupt = on_corrupt
        self.group_series = group_series
        """``take_encoded``/``take_bulk`` hand out a batch's rows with each series' rows together
        (series in order of first appearance), which makes a wire-format v2 document compact. Off
        where the rows' order carries meaning (the gateway's legacy frames)."""
        self.clocks = clocks or Clocks()
        self.stats = BufferStats(wall=self.clocks.wall)
        self._db: Db | None = None
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zhizao-buffer")
        self._decoder = SampleDecoder()
        self._pending: list[_Pending] = []
        self._pending_count = 0
        self._wake = asyncio.Event()
        self._data = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[int] = set()
        self._rec_inflight: set[int] = set()
        self._rec_released: set[int] = set()
        self._rec_cursor = 0
        self._rec_lock = asyncio.Lock()
        self._closed = False
        self._last_expiry: float | None = None  # time.monotonic() of the last expiry pass
        self._clock = StepDetector()
        self._boot_id: str | None = None  # read at open
        self._clock_step = 0.0  # a step of the wall clock not yet applied by a committed transaction
        self._clock_new = 0.0  # of it, seen while running and not yet reported

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (creating if needed) and check the database; start the group-commit task."""
        try:
            self._db = await self._in_thread(lambda delta: self._open_sync(False, delta))
        except BufferCorrupt as exc:
            self.stats.corruptions += 1
            if self.on_corrupt == "fail":
                raise
            log.error("buffer %s is corrupt (%s); moved aside, starting an empty buffer", self.path, exc)
            self._db = await self._in_thread(lambda delta: self._open_sync(True, delta))
        self._flusher = asyncio.create_task(self._flush_loop(), name="buffer-group-commit")
        if self.stats.backlog_samples:
            log.info("buffer %s opened with a backlog of %d samples", self.path, self.stats.backlog_samples)
            self._data.set()

    def _open_sync(self, quarantine: bool, delta: _Delta) -> Db:
        if quarantine:
            stamp = time.strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(f"{self.path}.corrupt-{stamp}{suffix}"))
        db = open_db(self.path, self.synchronous, secrets.token_hex(8))
        self._boot_id = self.clocks.boot_id()
        now = self._read_clocks()
        self._clock.seed(now)
        found = step_since(ClockReading.parse(db.clock_record()), now, self._clock.tolerance_s)
        if found is not None:
            self._report_restart_step(db, found, delta)
        step = found.seconds if found is not None and found.corrected else 0.0
        try:
            with db.transaction():
                if step:
                    db.note_clock_step(step)
                db.save_clock_record(now.text())
        except sqlite3.Error as exc:  # e.g. disk full: the step goes with the first commit
            self._clock_step += step
            log.warning("buffer: keeping the clocks' reading at open failed (%s); %s", exc,
                        "the clock step goes with the first commit" if step else "retried at each commit")
        delta.read_backlog(db)
        return db

    def _read_clocks(self) -> ClockReading:
        return ClockReading(self.clocks.wall(), self.clocks.steady(), self._boot_id)

    def _report_restart_step(self, db: Db, found: RestartStep, delta: _Delta) -> None:
        """One WARNING naming a step found at open (see :func:`step_since`), counted."""
        delta.clock_step = (found.kind, found.seconds)
        since = datetime.fromtimestamp(found.since.wall, UTC).isoformat(timespec="seconds")
        buffered = db.count_total + db.rec_samples
        if found.corrected:
            log.warning(
                "buffer %s: the wall clock stepped %.0f s %s while the buffer was closed (measured "
                "against CLOCK_BOOTTIME, same boot: %.0f s really elapsed since its last use at %s by "
                "the old clock); the %d samples buffered are aged from their arrival, not by the step "
                "(max_age_s=%s)", self.path, abs(found.seconds), "ahead" if found.seconds > 0 else "back",
                found.elapsed or 0.0, since, buffered, self.max_age_s)
            return
        log.warning(
            "buffer %s: the wall clock reads %.0f s earlier than at the buffer's last use (%s), before a "
            "reboot: it went backwards (it is wrong now, or was then). The time elapsed across a reboot "
            "is unknown, so the %d samples buffered are not re-aged: they may look younger than they "
            "are (kept longer than max_age_s=%s, the backlog age reads low); check the clock (NTP)",
            self.path, -found.seconds, since, buffered, self.max_age_s)

    def _clock_committed(self, delta: _Delta) -> None:
        """After a transaction that applied ``_clock_step`` committed: report what of it was seen
        while running (one WARNING, counted) and forget it."""
        new, self._clock_new, self._clock_step = self._clock_new, 0.0, 0.0
        if new:
            delta.clock_step = ("forward" if new > 0 else "backward", new)
            log.warning("buffer: the wall clock jumped %.0f s %s; the samples buffered before the jump are "
                        "aged from their arrival, not by the jump (max_age_s=%s)", abs(new),
                        "ahead" if new > 0 else "back", self.max_age_s)

    def _observe_clocks(self) -> ClockReading:
        """On the buffer's thread: read the clocks and add a step since the last reading to what
        the next committed transaction applies."""
        now = self._read_clocks()
        step = self._clock.step(now)
        self._clock_new += step
        self._clock_step += step
        return now

    def _checkpoint_sync(self, db: Db, delta: _Delta) -> None:
        """Keep the clocks' reading at close (with a step seen since the last commit applied):
        the next open measures a step made while the buffer was closed from it."""
        now = self._observe_clocks()
        with db.transaction():
            if self._clock_step:
                db.note_clock_step(self._clock_step)
            db.save_clock_record(now.text())
        self._clock_committed(delta)

    async def close(self) -> None:
        """Commit what is pending, then close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._wake.set()
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._commit_pending()
        if self._db is not None:
            db = self._db
            try:
                await self._in_thread(lambda delta: self._checkpoint_sync(db, delta), db)
            except (sqlite3.Error, OSError) as exc:  # the last commit's reading stays (as good)
                log.warning("buffer: keeping the clocks' reading at close failed (%s)", exc)
            await asyncio.get_running_loop().run_in_executor(self._exec, db.close)
        self._exec.shutdown(wait=True)

    # -- put -------------------------------------------------------------------------------
    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        """Queue ``samples`` for the next group commit; the future resolves once committed.

        ``marks`` (key → text) are committed in the same transaction (when the samples are), so
        a connector can remember exactly what it has committed, e.g. each OPC UA node's last
        source timestamp; read them back with :meth:`marks`."""
        if self._closed:
            raise RuntimeError("buffer is closed")
        fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        rows = encode_samples(samples)
        self._pending.append(_Pending(rows, fut, marks))
        self._pending_count += len(rows)
        if self._pending_count >= self.commit_max_samples or len(self._pending) == 1:
            self._wake.set()
        return fut

    async def put(self, samples: Sequence[Sample]) -> PutResult:
        """Commit ``samples`` durably (group commit); see the module docstring."""
        return await self.submit(samples)

    def submit_records(
        self, records: Sequence[EncodedBatch], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        """Queue whole-document records (:meth:`EncodedBatch.record`) for the next group commit;
        the future resolves once they are committed (``PutResult`` counts their samples).

        ``marks`` are committed in the same transaction (when the records are), as with
        :meth:`submit`: the gateway remembers there which vendor messages it has committed."""
        if self._closed:
            raise RuntimeError("buffer is closed")
        rows: list[_Record] = []
        for r in records:
            if r.document is None:
                raise ValueError("submit_records takes records (EncodedBatch.record), not sample rows")
            rows.append((r.producer, r.batch_id, r.seq, r.n, r.document))
        fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending([], fut, marks, rows))
        self._pending_count += sum(r[3] for r in rows)
        if self._pending_count >= self.commit_max_samples or len(self._pending) == 1:
            self._wake.set()
        return fut

    async def put_records(self, records: Sequence[EncodedBatch]) -> PutResult:
        """Commit records durably (group commit); see :meth:`submit_records`."""
        return await self.submit_records(records)

    async def marks(self, prefix: str) -> dict[str, str]:
        """Committed marks whose key starts with ``prefix`` (see :meth:`submit`)."""
        if self._db is None:
            raise RuntimeError("buffer is not open")
        db = self._db
        return await asyncio.get_running_loop().run_in_executor(self._exec, db.get_marks, prefix)

    async def flush(self) -> None:
        """Commit everything submitted so far now."""
        await self._commit_pending()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending_count < self.commit_max_samples:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.commit_interval):  # not wait_for: zhizao.waiting
                        await self._full_or_timeout()
            await self._commit_pending()

    async def _full_or_timeout(self) -> None:
        while self._pending_count < self.commit_max_samples:
            self._wake.clear()
            await self._wake.wait()

    async def _commit_pending(self) -> None:
        if not self._pending or self._db is None:
            return
        pending, self._pending, self._pending_count = self._pending, [], 0
        db = self._db
        groups = [(p.rows, p.marks, p.records) for p in pending]
        fut = self._in_thread(lambda delta: self._commit_sync(db, groups, delta), db)
        try:
            await asyncio.wait({fut})  # neither raises the commit's failure nor cancels it
        except asyncio.CancelledError:  # close() mid-commit: the commit goes on; answer when it ends
            fut.add_done_callback(lambda f: self._settle(pending, f))
            raise
        self._settle(pending, fut)

    def _settle(self, pending: list[_Pending], fut: asyncio.Future[list[PutResult]]) -> None:
        """Resolve every waiter of one commit with its result, or with the commit's failure."""
        failure = RuntimeError("buffer commit cancelled") if fut.cancelled() else fut.exception()
        if failure is not None:
            for p in pending:
                if not p.future.done():
                    p.future.set_exception(failure)
            log.error("buffer commit failed: %s", failure)
            return
        for p, res in zip(pending, fut.result(), strict=True):
            if not p.future.done():
                p.future.set_result(res)
        self._data.set()

    def _commit_sync(
        self,
        db: Db,
        groups: list[tuple[list[bytes], dict[str, str] | None, list[_Record] | None]],
        delta: _Delta,
    ) -> list[PutResult]:
        clocks = self._observe_clocks()
        now = clocks.wall
        step = self._clock_step
        expire = self._last_expiry is None or time.monotonic() - self._last_expiry > 1.0
        incoming = sum(len(r) for g, _, _ in groups for r in g) + sum(
            len(r[4]) for _, _, recs in groups for r in recs or ())
        results: list[PutResult] = []
        with db.transaction():
            if step:
                db.note_clock_step(step)
            if expire:
                delta.expired = db.drop_older_than(now - self.max_age_s, self._inflight)
                delta.expired += db.drop_records_older_than(now - self.max_age_s, self._rec_inflight)
                db.settle_clock_shift()
            excess = db.total_bytes + incoming - self.max_bytes
            if excess > 0 and self.overflow == "drop_oldest":
                delta.overflow = db.drop_oldest_bytes(excess, self._inflight)
                excess = db.total_bytes + incoming - self.max_bytes
                if excess > 0:
                    delta.overflow += db.drop_oldest_records(excess, self._rec_inflight)
            added = 0
            all_rows: list[bytes] = []
            all_recs: list[_Record] = []
            all_marks: dict[str, str] = {}
            for rows, marks, recs in groups:  # in order; one statement per table for all of them
                size = sum(len(r) for r in rows) + sum(len(r[4]) for r in recs or ())
                count = len(rows) + sum(r[3] for r in recs or ())
                if self.overflow == "reject_new" and db.total_bytes + added + size > self.max_bytes:
                    results.append(PutResult(0, count))
                    delta.rejected += count
                    continue
                added += size
                all_rows += rows
                all_recs += recs or ()
                all_marks.update(marks or {})
                results.append(PutResult(count, 0))
            if all_rows:
                db.insert(all_rows, now)
            if all_recs:
                db.insert_records(all_recs, now)
            if all_marks:
                db.set_marks(all_marks)
            db.save_clock_record(clocks.text())
        # committed: only now is anything dropped (a failed commit raised above, counting nothing)
        self._clock_committed(delta)
        if expire:
            self._last_expiry = time.monotonic()
        if delta.expired:
            log.warning("buffer: dropped %d samples older than max_age_s=%s", delta.expired, self.max_age_s)
        if delta.overflow:
            log.warning("buffer full (max_bytes=%d): drop_oldest dropped %d samples", self.max_bytes,
                        delta.overflow)
        if delta.rejected:
            log.warning("buffer full (max_bytes=%d): reject_new refused %d samples", self.max_bytes,
                        delta.rejected)
        delta.committed = sum(r.committed for r in results)
        delta.commits = 1
        return results

    # -- take / ack ------------------------------------------------------------------------
    async def take(self, max_items: int, linger: float = 0.0) -> Batch | None:
        """The next batch to send (see the module docstring), or ``None`` after ``linger`` s."""
        got = await self._take(max_items, linger, decode=True)
        assert got is None or isinstance(got, Batch)
        return got

    async def take_encoded(self, max_items: int, linger: float = 0.0) -> EncodedBatch | None:
        """Like :meth:`take`, but the samples stay in their stored wire-format rows (no decoding).

        Ack or release it like a ``Batch`` (by ``seq``)."""
        got = await self._take(max_items, linger, decode=False)
        assert got is None or isinstance(got, EncodedBatch)
        return got

    async def _take(self, max_items: int, linger: float, *, decode: bool) -> Batch | EncodedBatch | None:
        if self._db is None:
            raise RuntimeError("buffer is not open")
        deadline = time.monotonic() + linger
        while True:
            self._data.clear()
            db = self._db
            force = self._pending_count == 0 and time.monotonic() >= deadline
            take = partial(
                self._take_sync, db=db, max_items=max_items, linger=linger, force=force, decode=decode
            )
            fut = self._in_thread(take, db)
            try:
                batch = await asyncio.shield(fut)
            except asyncio.CancelledError:
                fut.add_done_callback(self._release_orphan)  # the thread may still hand out a batch
                raise
            if batch is not None:
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0 and force:
                return None
            await wait_event(self._data, max(0.01, min(remaining, linger) or 0.05))

    def _release_orphan(self, fut: asyncio.Future[Batch | EncodedBatch | None]) -> None:
        if not fut.cancelled() and fut.exception() is None and (batch := fut.result()) is not None:
            self.release(batch)

    def _take_sync(
        self, delta: _Delta, db: Db, max_items: int, linger: float, *, force: bool, decode: bool
    ) -> Batch | EncodedBatch | None:
        while True:
            formed = db.oldest_batch(self._inflight)
            if formed is None:
                waiting = db.unbatched_count()
                if waiting == 0:
                    return None
                oldest = db.oldest_unbatched_created()
                old_enough = oldest is not None and self.clocks.wall() - oldest >= linger
                if waiting < max_items and not (force or old_enough):
                    return None
                formed = db.form_batch(max_items)
                if formed is None:  # the counters were wrong (recounted): look again next time
                    return None
            seq, batch_id, rows = formed
            samples: list[Sample] = []
            series: dict[SeriesKey, list[bytes]] = {}
            good: list[bytes] = []
            for data in rows:
                try:
                    if decode:
                        samples.append(self._decoder.decode(data))
                    elif self.group_series:
                        series.setdefault(row_series(data), []).append(data)
                    else:
                        row_series(data)  # a cheap check: a JSON object
                        good.append(data)
                except ValueError as exc:
                    delta.corrupt_rows += 1
                    log.error("buffer: damaged row in batch %s skipped: %s", batch_id, exc)
            if not (samples or series or good):
                db.delete_batch(seq)
                continue
            self._inflight.add(seq)
            if decode:
                return Batch(self.producer, batch_id, seq, tuple(samples))
            if self.group_series:  # the same order at every resend (rows come back in id order)
                good = list(chain.from_iterable(series.values()))
            return EncodedBatch(self.producer, batch_id, seq, tuple(good), series=len(series))

    async def ack(self, batch: Batch | EncodedBatch) -> None:
        """The receiver has the batch: delete it and its samples for good."""
        await self.ack_many([batch])

    async def ack_many(self, batches: Sequence[Batch | EncodedBatch]) -> None:
        """:meth:`ack` of several batches or records in one transaction."""
        if self._db is None:
            raise RuntimeError("buffer is not open")
        db = self._db
        seqs = [b.seq for b in batches if not (isinstance(b, EncodedBatch) and b.record_id is not None)]
        ids = [b.record_id for b in batches if isinstance(b, EncodedBatch) and b.record_id is not None]
        n = sum(len(b) for b in batches)
        await self._in_thread(lambda delta: self._ack_sync(db, seqs, ids, n, delta), db)
        for seq in seqs:
            self._inflight.discard(seq)
        for rid in ids:
            self._rec_inflight.discard(rid)

    @staticmethod
    def _ack_sync(db: Db, seqs: list[int], ids: list[int], n: int, delta: _Delta) -> None:
        delta.acked = n
        delta.batches_acked = len(seqs) + len(ids)
        if len(seqs) == 1 and not ids:
            db.delete_batch(seqs[0])
            return
        if ids and not seqs:
            db.delete_records(ids)
            return
        with db.transaction():
            for seq in seqs:
                db.delete_batch(seq, in_transaction=True)
            if ids:
                db.delete_records(ids, in_transaction=True)
        db.delete_records([])  # refreshes the oldest row and reclaims space when empty

    def release(self, batch: Batch | EncodedBatch) -> None:
        """Give a taken batch back without acking it; it is taken again later under the same id."""
        if isinstance(batch, EncodedBatch) and batch.record_id is not None:
            self._rec_inflight.discard(batch.record_id)
            self._rec_released.add(batch.record_id)
        else:
            self._inflight.discard(batch.seq)
        self._data.set()

    # -- take_bulk (records, or batches of sample rows) ------------------------------------
    async def take_bulk(
        self, max_items: int, limits: BulkLimits | None = None, linger: float = 0.0
    ) -> list[EncodedBatch]:
        """Several batches to send in one request, oldest first, within ``limits``: stored records
        when there are any, else encoded batches of at most ``max_items`` sample rows (the first
        formed as :meth:`take_encoded` forms it, further ones only when already full). Returns an
        empty list after ``linger`` s with nothing to send. Ack or release each item."""
        if self._db is None:
            raise RuntimeError("buffer is not open")
        lim = limits or BulkLimits()
        deadline = time.monotonic() + linger
        while True:
            self._data.clear()
            records = await self._take_records(lim)
            if records:
                return records
            force = self._pending_count == 0 and time.monotonic() >= deadline
            if self._db.count_total:
                db = self._db
                take = partial(
                    self._take_many_sync, db=db, max_items=max_items, linger=linger, force=force, lim=lim
                )
                fut = self._in_thread(take, db)
                try:
                    batches = await asyncio.shield(fut)
                except asyncio.CancelledError:
                    fut.add_done_callback(self._release_orphans)
                    raise
                if batches:
                    return batches
            remaining = deadline - time.monotonic()
            if remaining <= 0 and force:
                return []
            await wait_event(self._data, max(0.01, min(remaining, linger) or 0.05))

    def _release_orphans(self, fut: asyncio.Future[list[EncodedBatch]]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            for batch in fut.result():
                self.release(batch)

    def _take_many_sync(
        self, delta: _Delta, db: Db, max_items: int, linger: float, *, force: bool, lim: BulkLimits
    ) -> list[EncodedBatch]:
        out: list[EncodedBatch] = []
        n = size = 0
        while len(out) < lim.max_batches:
            try:
                got = self._take_sync(delta, db, max_items, linger, force=force and not out, decode=False)
            except sqlite3.Error as exc:  # e.g. forming one more batch did not commit (disk full)
                if not out:
                    raise
                log.warning("buffer: forming a further batch failed (%s); handing out the %d taken",
                            exc, len(out))  # (raising would leave them taken, never handed out)
                break
            if got is None:
                break
            assert isinstance(got, EncodedBatch)
            out.append(got)
            n += len(got)
            size += sum(len(r) for r in got.rows)
            if n + max_items > lim.max_samples or size + size // len(out) > lim.max_bytes:
                break
        return out

    async def _take_records(self, lim: BulkLimits) -> list[EncodedBatch]:
        """Records not in flight, oldest first (released ones before new ones), within ``lim``."""
        if self._db is None or self._db.rec_count == 0:
            return []
        async with self._rec_lock:
            db = self._db
            released = sorted(self._rec_released)
            fut = asyncio.get_running_loop().run_in_executor(
                self._exec, self._take_records_sync, db, released, self._rec_cursor, lim
            )
            rows, cursor, gone = await asyncio.shield(fut)  # cancelled: nothing was handed out
            self._rec_released.difference_update(gone)  # dropped by the overflow policy meanwhile
            self._rec_cursor = max(self._rec_cursor, cursor)
            out: list[EncodedBatch] = []
            for rid, producer, batch_id, seq, n, data in rows:
                self._rec_inflight.add(rid)
                self._rec_released.discard(rid)
                out.append(EncodedBatch.record(producer, batch_id, seq, n, bytes(data), record_id=rid))
            return out

    @staticmethod
    def _take_records_sync(
        db: Db, released: list[int], cursor: int, lim: BulkLimits
    ) -> tuple[list[RecordRow], int, set[int]]:
        """The rows to hand out, the new cursor (the last new id handed out) and the released
        ids that no longer exist."""
        out: list[RecordRow] = []
        n = size = 0
        reached = cursor
        candidates = db.records_by_id(released) if released else []
        gone = set(released) - {row[0] for row in candidates}
        candidates += db.records_after(cursor, lim.max_batches)
        for row in candidates:
            rid, _, _, _, k, data = row
            if out and (len(out) >= lim.max_batches or n + k > lim.max_samples
                        or size + len(data) > lim.max_bytes):
                break
            out.append(row)
            n += k
            size += len(data)
            reached = max(reached, rid)
        return out, reached, gone

    # -- the buffer's thread -----------------------------------------------------------------
    def _in_thread(self, op: Callable[[_Delta], _T], db: Db | None = None) -> asyncio.Future[_T]:
        """Run ``op`` on the buffer's thread. What it counts in its :class:`_Delta`, and the
        backlog of ``db`` after it, reach :attr:`stats` on the event loop before any awaiter of
        the result resumes, in the order the operations ran (also when the awaiter was
        cancelled: the operation happened)."""

        def run() -> tuple[_T, _Delta]:
            delta = _Delta()
            out = op(delta)
            if db is not None:
                delta.read_backlog(db)
            return out, delta

        loop = asyncio.get_running_loop()
        raw = loop.run_in_executor(self._exec, run)
        result: asyncio.Future[_T] = loop.create_future()

        def done(f: asyncio.Future[tuple[_T, _Delta]]) -> None:
            if f.cancelled():
                result.cancel()
            elif (exc := f.exception()) is not None:
                if not result.done():
                    result.set_exception(exc)
            else:
                out, delta = f.result()
                self._apply(delta)
                if not result.done():
                    result.set_result(out)

        raw.add_done_callback(done)
        return result

    def _apply(self, delta: _Delta) -> None:
        stats = self.stats
        stats.committed += delta.committed
        stats.commits += delta.commits
        stats.acked += delta.acked
        stats.batches_acked += delta.batches_acked
        stats.corrupt_rows += delta.corrupt_rows
        stats.dropped["expired"] += delta.expired
        stats.dropped["overflow"] += delta.overflow
        stats.dropped["rejected"] += delta.rejected
        if delta.clock_step is not None:
            kind, seconds = delta.clock_step
            stats.clock_steps[kind] = stats.clock_steps.get(kind, 0) + 1
            stats.last_clock_step_s = seconds
        if delta.backlog is not None:
            (stats.backlog_samples, stats.backlog_record_samples, stats.backlog_records,
             stats.backlog_bytes, stats.oldest_created) = delta.backlog

