"""The write path, independent of HTTP: decode, limit, deduplicate, store — in that order.

:class:`IngestService` is created by the app factory and shared by the routes. Its contract:
a batch is acknowledged (returns) only after the store committed it; any problem raises
:class:`~ingest.problems.Problem` (4xx, nothing stored) or ``StoreUnavailable`` (503).

Rate limit (``limits.rate_samples_per_s``, :mod:`ingest.ratelimit`): a write is admitted only if
each of its producers' buckets holds that producer's samples in the request now — or, for more
samples than the burst, a full bucket — and then all those samples are taken (a bucket may go
below zero: a debt the producer repays by waiting), from all producers of a bulk request at once
or from none (429); they are held while the store writes. Each frame (each line of a bulk
request) is charged its own samples, and once the store has answered for it that charge is kept
when the store stored it (or refused its data, or failed unexpectedly) and given back — exactly
that line's samples, never more than was taken, never above a full bucket — when the store
answered that it was a duplicate or raised ``StoreUnavailable`` (nothing committed: the sender
retries and pays then). A write still pending at the write timeout (answered 503) settles when the
store answers it, so a write that commits after its 503 stays charged and its resend, a
duplicate, is free: each stored sample is paid exactly once.

A write without a batch id (line protocol), whose resend nothing could recognise, is not left
running at the write timeout: it is stopped where the store can stop it
(:class:`~ingest.storage.base.Abortable`, DuckDB) and its outcome awaited for up to
:data:`STOP_GRACE_S` — a commit answered as the success it is, a stop as 503 "nothing was stored",
no answer as :class:`~ingest.problems.OutcomeUnknown` (503, "may still be stored").

Every store write runs as a task whose outcome is always read: one the caller gave up on (503 at
the write timeout, or the request cancelled) and that then fails is counted in
``zhizao_ingest_store_errors_total{operation="write"}`` and logged once, at WARNING, naming the
store and the reason — never asyncio's "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from ingest.auth import TokenRecord
from ingest.decode import DecodedBatch, Decoder, OutOfRange
from ingest.metrics import Metrics
from ingest.problems import OutcomeUnknown, Problem
from ingest.ratelimit import RateLimiter
from ingest.settings import Settings
from ingest.storage.base import Abortable, BatchKey, DataRefused, SampleFrame, Store, WriteResult
from zhizao.errors import StoreUnavailable, TooLarge, WireFormatError
from zhizao.wire import decompress

log = logging.getLogger(__name__)
STOP_GRACE_S: Final = 2.0
"""How long a write without a batch id, stopped at ``storage.write_timeout_s``, is still awaited
for its outcome (:meth:`IngestService.write_frames`): DuckDB's interrupt lands in milliseconds; a
store that cannot stop a write (InfluxDB) may still answer within it."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    producer: str
    batch_id: str
    seq: int
    accepted: int
    rejected: dict[int, str]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Charge:
    """What one frame written costs against the rate limit: ``samples`` of ``producer``."""

    producer: str
    samples: int


@dataclass(frozen=True, slots=True)
class LineError:
    """A bulk line refused on its own (``status`` as the single endpoint would answer it)."""

    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """One entry per non-blank line of a bulk request, in order."""

    lines: list[BatchOutcome | LineError]


@dataclass
class IngestService:
    settings: Settings
    store: Store
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.decoder = Decoder()
        limits = self.settings.limits
        self.limiter = (None if limits.rate_samples_per_s is None
                        else RateLimiter(limits.rate_samples_per_s, limits.rate_burst_samples))
        limiter = self.limiter
        if limiter is not None:
            self.metrics.rate_limit_producers.set_function(lambda: len(limiter))
        self._running: set[asyncio.Task[WriteResult]] = set()
        """Store writes not finished yet (some answered 503 at the timeout): kept until they settle."""

    def refuse(self, problem: Problem) -> Problem:
        """Count a refused request and return ``problem`` for raising."""
        self.metrics.requests_rejected.labels(str(problem.status), problem.reason).inc()
        return problem

    async def write_frame(self, frame: SampleFrame, key: BatchKey | None, source: str,
                          charge: Charge | None = None) -> WriteResult:
        """Store ``frame`` within the configured write timeout, charging ``charge`` to the rate
        limit (:meth:`write_frames`); ``StoreUnavailable`` otherwise, ``Problem`` 422 when the
        store refuses the data itself (:func:`refused_problem`), 429 over the rate limit."""
        result = (await self.write_frames([(frame, key)], source, [charge]))[0]
        if isinstance(result, DataRefused):
            raise self.refuse(refused_problem(result))
        return result

    async def write_frames(self, items: Sequence[tuple[SampleFrame, BatchKey | None]], source: str,
                           charges: Sequence[Charge | None] = ()) -> list[WriteResult | DataRefused]:
        """Store every frame (handed to the store together, so they share its group commit) within
        the configured write timeout; ``StoreUnavailable`` unless all of them were committed or
        refused. A frame whose data the store refused (a permanent verdict on that frame alone, the
        others are stored) has its :class:`DataRefused` in its place.

        ``charges`` (one per item, ``None`` for none; empty: nothing charged) are taken from the
        rate limit first, all or none (``Problem`` 429, nothing written), and each is settled when
        the store answers for its frame — kept or given back, as the module docstring says —
        even when that is after this call gave up at the timeout."""
        if not items:
            return []
        self._take_rate(charges)
        timeout = self.settings.storage.write_timeout_s
        store = self.store
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(store.write(frame, key)) for frame, key in items]
        limiter = self.limiter
        for task, charge in zip(tasks, charges, strict=False):
            if charge is not None and limiter is not None:  # (before asyncio.wait's own callback)
                task.add_done_callback(partial(_settle, limiter, charge))
        self._running.update(tasks)  # referenced until done, even if the caller goes away
        for task in tasks:
            task.add_done_callback(self._finished)
        stopped = False
        try:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending and all(key is None for _, key in items):
                stopped = True
                pending = await self._stop(items, tasks)
        except asyncio.CancelledError:  # the request went away: the store finishes its writes
            self._abandon(tasks, "the request was cancelled")
            raise
        if pending:  # left running (the store finishes them): their charges settle when they do
            self._abandon(tasks, f"answered 503 at the {timeout} s write timeout")
            self.metrics.store_errors.labels("write").inc()
            self.metrics.store_up.set(0)
            if stopped:
                raise OutcomeUnknown(f"store {store.name} did not commit within {timeout} s, nor answer "
                                     f"within {STOP_GRACE_S:g} s more")
            raise StoreUnavailable(f"store did not commit within {timeout} s")
        answers = [_answer(t) for t in tasks]
        failure = next((a for a in answers if isinstance(a, StoreUnavailable)), None) or next(
            (a for a in answers if isinstance(a, BaseException) and not isinstance(a, DataRefused)), None)
        if isinstance(failure, StoreUnavailable):
            self.metrics.store_errors.labels("write").inc()
            self.metrics.store_up.set(0)
            if stopped:  # stopped and rolled back (DuckDB), or failed: nothing of it was committed
                raise StoreUnavailable(f"store did not commit within {timeout} s: {failure}") from None
            raise failure
        if failure is not None:  # a store bug: answer 500 cleanly, keep serving
            self.metrics.store_errors.labels("write").inc()
            log.error("store %s failed unexpectedly", store.name, exc_info=failure)
            raise Problem(500, f"internal store error ({type(failure).__name__}); nothing was acknowledged "
                          "— see the ingest log", reason="store_bug") from None
        results = [a for a in answers if isinstance(a, WriteResult | DataRefused)]
        self.metrics.store_up.set(1)
        written = sum(r.accepted for r in results if isinstance(r, WriteResult) and not r.duplicate)
        if written:
            self.metrics.samples_written.labels(source).inc(written)
        return results

    async def _stop(self, items: Sequence[tuple[SampleFrame, BatchKey | None]],
                    tasks: Sequence[asyncio.Task[WriteResult]]) -> set[asyncio.Task[WriteResult]]:
        """Writes without a batch id (line protocol) still pending at the write timeout: a resend
        of them cannot be recognised, so answering 503 while they commit later would store them
        twice. Stop them where the store can (:class:`~ingest.storage.base.Abortable`: DuckDB) and
        wait up to :data:`STOP_GRACE_S` for their real outcome — a commit that came first is then
        answered as the success it is, a stopped write as 503 "nothing was stored". Returns those
        still pending after that (answered :class:`~ingest.problems.OutcomeUnknown`)."""
        pending = [t for t in tasks if not t.done()]
        if isinstance(self.store, Abortable):
            self.store.abort_writes([f for (f, _), t in zip(items, tasks, strict=True) if not t.done()])
        _, still = await asyncio.wait(pending, timeout=STOP_GRACE_S)
        return still

    def _finished(self, task: asyncio.Task[WriteResult]) -> None:
        """Done-callback of every store write: forget it, and read its outcome so asyncio never
        logs "Task exception was never retrieved" for a write nobody awaits any more."""
        self._running.discard(task)
        if not task.cancelled():
            task.exception()

    def _abandon(self, tasks: Sequence[asyncio.Task[WriteResult]], why: str) -> None:
        """The caller stopped waiting for ``tasks`` (``why``): once all are done, count and log (once,
        at WARNING) the failures it will never see. A late commit, duplicate or refusal is no error."""
        store = self.store.name

        def report(_: object) -> None:
            failures = [e for e in (t.exception() for t in tasks if not t.cancelled())
                        if e is not None and not isinstance(e, DataRefused)]
            if not failures:
                return
            self.metrics.store_errors.labels("write").inc()
            first = failures[0]
            log.warning("store %s: a write %s then failed (%d of %d frames): %s: %s", store, why,
                        len(failures), len(tasks), type(first).__name__, str(first))

        asyncio.gather(*tasks, return_exceptions=True).add_done_callback(report)

    def _decode(self, body: bytes | memoryview) -> DecodedBatch:
        """Decode one wire-format document; ``Problem`` 413/400 for an oversized or bad one."""
        limits = self.settings.limits
        try:
            decoded = self.decoder.decode(body, max_bytes=limits.max_body_bytes)
        except WireFormatError as exc:
            raise self.refuse(_wire_problem(exc, limits.max_body_bytes)) from None
        if decoded.total > limits.max_samples_per_batch:
            raise self.refuse(Problem(
                413, f"batch has {decoded.total} samples; "
                f"the limit is {limits.max_samples_per_batch} per batch",
                reason="too_many_samples", limit=limits.max_samples_per_batch))
        return decoded

    def _authorise(self, writer: TokenRecord | None, producers: Iterable[str]) -> None:
        """403 unless ``writer`` (``None``: auth disabled) may write batches as every one of
        ``producers`` (:meth:`~ingest.auth.TokenRecord.may_write_as`). Called once the batch is
        decoded and before the rate limit and the store: a refused batch takes nothing from any
        producer's rate, stores nothing and marks nothing as seen for deduplication."""
        if writer is None:
            return
        refused = sorted({p for p in producers if not writer.may_write_as(p)})
        if not refused:
            return
        names = ", ".join(repr(p) for p in refused)
        log.warning("token %s (%s) refused: it may not write as producer %s (it writes as: %s)",
                    writer.id, writer.name, names, writer.binding())
        raise self.refuse(Problem(
            403, f"token {writer.id} ({writer.name}) may not write batches as producer {names}; it "
            f"writes as: {writer.binding()}. Nothing was stored. An agent's token is named after its "
            f"agent id (zhizao ingest token create --name {refused[0]}), or bound with --producer; a "
            "site gateway's token is created with --forwarder", reason="producer_not_allowed"))

    def _take_rate(self, charges: Sequence[Charge | None]) -> None:
        """Take ``charges`` (summed per producer, all of them: a producer's bucket admits its sum
        holding ``min(sum, burst)`` and may go below zero) from the rate limiter, all or none; 429
        naming the first producer that cannot be admitted, with nothing taken from any. Each charge
        is later settled on its own (:func:`_settle`), so refunds never exceed what was taken."""
        if self.limiter is None:
            return
        counts: dict[str, int] = {}
        for c in charges:
            if c is not None:
                counts[c.producer] = counts.get(c.producer, 0) + c.samples
        refused = self.limiter.take_all(counts)
        if refused is not None:
            producer, wait = refused
            retry = max(1, math.ceil(wait))
            raise self.refuse(Problem(
                429, f"producer {producer!r} exceeds {self.settings.limits.rate_samples_per_s:g} "
                f"samples/s; retry in {retry} s", reason="rate_limited",
                headers={"Retry-After": str(retry)}))

    def _count_rejected(self, decoded: DecodedBatch, rejected: dict[int, str]) -> None:
        for reason in rejected.values():
            self.metrics.samples_rejected.labels(reason.split(":", 1)[0] or "sample").inc()
        if rejected:
            first = min(rejected)
            log.info("batch %s/%s: %d samples rejected, first: %s", decoded.producer, decoded.batch_id,
                     len(rejected), (first, rejected[first]))

    def _outcome(self, decoded: DecodedBatch, result: WriteResult) -> BatchOutcome:
        """The answer for ``decoded`` stored as ``result``: its samples rejected when decoded and
        those the store did not keep (``result.dropped``, mapped to their index in the document)."""
        rejected = decoded.rejected
        if result.dropped:
            rejected = {**rejected, **_in_document(decoded, result.dropped)}
        if result.duplicate:
            self.metrics.dedup_hits.inc()
            self.metrics.batches.labels("duplicate").inc()
        else:  # its rejected samples are counted once: when it is stored, not for each resend
            self.metrics.batches.labels("stored").inc()
            self._count_rejected(decoded, rejected)
        return BatchOutcome(decoded.producer, decoded.batch_id, decoded.seq, result.accepted,
                            rejected, result.duplicate)

    async def ingest_batch(self, body: bytes, writer: TokenRecord | None = None) -> BatchOutcome:
        """Decode and store one wire-format batch (``body`` possibly gzip) sent with the token of
        ``writer`` (``None``: auth disabled); 403 when the token may not write as its producer."""
        decoded = self._decode(body)
        self._authorise(writer, (decoded.producer,))
        result = await self.write_frame(decoded.frame, BatchKey(decoded.producer, decoded.batch_id), "batch",
                                        Charge(decoded.producer, decoded.total))
        return self._outcome(decoded, result)

    async def ingest_bulk(self, body: bytes, writer: TokenRecord | None = None) -> BulkOutcome:
        """Decode and store many wire-format batches sent as NDJSON (``body`` possibly gzip), with
        the token of ``writer`` (``None``: auth disabled).

        Contract: every non-blank line is one batch, answered in order by a :class:`BatchOutcome`
        or, when that line alone is bad (envelope, too many samples), a :class:`LineError` — the
        other lines are stored anyway. Whole-request problems raise ``Problem`` (403 a line whose
        producer the token may not write as, 413 too many lines or samples, 429 rate limit) before
        anything is stored. All valid lines are handed
        to the store together (one group commit / one InfluxDB write) and the call returns only
        after every one is durable; ``StoreUnavailable`` (503) means some may be stored and some
        not — resending is safe, the stored ones come back as duplicates.
        """
        limits = self.settings.limits
        try:
            raw = decompress(body, max_bytes=limits.max_body_bytes)
        except WireFormatError as exc:
            raise self.refuse(_wire_problem(exc, limits.max_body_bytes)) from None
        lines = ndjson_lines(raw)
        if len(lines) > limits.max_bulk_batches:
            raise self.refuse(Problem(
                413, f"bulk request has {len(lines)} batches; the limit is {limits.max_bulk_batches}",
                reason="too_many_batches", limit=limits.max_bulk_batches))
        decoded: list[DecodedBatch | LineError] = []
        producers: set[str] = set()
        total = 0
        for line in lines:
            try:
                d = self._decode(line)
            except Problem as problem:
                decoded.append(LineError(problem.status, problem.detail))
                continue
            decoded.append(d)
            producers.add(d.producer)
            total += d.total
        # a line the token may not write refuses the whole request (403, nothing stored), so a
        # misconfigured token keeps the data in the sender's buffer instead of dead-lettering it
        self._authorise(writer, sorted(producers))
        if total > limits.max_bulk_samples:
            raise self.refuse(Problem(
                413, f"bulk request has {total} samples; the limit is {limits.max_bulk_samples} "
                "per request", reason="too_many_samples", limit=limits.max_bulk_samples))
        valid = [d for d in decoded if isinstance(d, DecodedBatch)]
        items = [(d.frame, BatchKey(d.producer, d.batch_id)) for d in valid]
        results = await self.write_frames(items, "bulk", [Charge(d.producer, d.total) for d in valid])
        by_id: dict[int, BatchOutcome | LineError] = {}
        for d, r in zip(valid, results, strict=True):
            if isinstance(r, DataRefused):  # that line only, as POST /api/v1/batches would answer it
                refused = self.refuse(refused_problem(r))
                by_id[id(d)] = LineError(refused.status, refused.detail)
            else:
                by_id[id(d)] = self._outcome(d, r)
        return BulkOutcome([by_id[id(d)] if isinstance(d, DecodedBatch) else d for d in decoded])


_BLANK: Final = frozenset(b" \t\n\r\x0b\x0c")
"""The bytes ``bytes.strip()`` removes."""


def ndjson_lines(body: bytes) -> list[memoryview]:
    """The lines of ``body`` that are not blank (only what ``bytes.strip()`` removes), each split
    at ``\\n`` as ``body.split(b"\\n")`` splits it, as views of ``body``: no line is copied (a
    bulk request of 100 batches is ~1 MB; ``split`` copied it for ~1.2 ms, 0.12 µs per sample,
    on this project's machine). A line is blank only if both its ends are whitespace, so the
    copy that checks the rest is made for such lines only."""
    view = memoryview(body)
    lines: list[memoryview] = []
    start, end = 0, body.find(b"\n")
    while True:
        stop = len(body) if end < 0 else end
        if stop > start and (body[start] not in _BLANK or body[stop - 1] not in _BLANK
                             or body[start:stop].strip()):
            lines.append(view[start:stop])
        if end < 0:
            return lines
        start, end = end + 1, body.find(b"\n", end + 1)


def _settle(limiter: RateLimiter, charge: Charge, task: asyncio.Task[WriteResult]) -> None:
    """Settle ``charge`` once the store answered ``task`` (module docstring): its samples — exactly
    what :meth:`IngestService._take_rate` took for it — given back for a duplicate or
    ``StoreUnavailable`` (nothing committed) or a cancelled write, kept otherwise."""
    if task.cancelled():
        limiter.refund(charge.producer, charge.samples)
        return
    exc = task.exception()
    if isinstance(exc, StoreUnavailable) or (exc is None and task.result().duplicate):
        limiter.refund(charge.producer, charge.samples)


def _answer(task: asyncio.Task[WriteResult]) -> WriteResult | BaseException:
    """A finished write's result or exception (a cancelled one: ``StoreUnavailable``)."""
    if task.cancelled():
        return StoreUnavailable("the store's write was cancelled")
    return task.exception() or task.result()


def _in_document(decoded: DecodedBatch, dropped: Sequence[tuple[int, str]]) -> dict[int, str]:
    """``dropped`` (positions in ``decoded.frame``) as ``{index in the document: reason}``: the
    frame holds the document's samples not rejected when decoding, in document order."""
    if not decoded.rejected:
        return {pos: reason for pos, reason in dropped if pos < decoded.total}
    kept = [i for i in range(decoded.total) if i not in decoded.rejected]
    return {kept[pos]: reason for pos, reason in dropped if pos < len(kept)}


def refused_problem(exc: DataRefused) -> Problem:
    """422 for data the store refused (InfluxDB could not parse a point, a field type conflict):
    permanent — the agent dead-letters the batch (no per-sample ``index``: the whole batch)."""
    return Problem(422, f"the store refused this batch's data, nothing of it was acknowledged; resending "
                   f"it unchanged cannot succeed: {exc.reason}", reason="store_refused")


def _wire_problem(exc: WireFormatError, max_bytes: int) -> Problem:
    if isinstance(exc, TooLarge):
        return Problem(413, f"{exc}; the limit is {max_bytes} bytes", reason="body_too_large",
                       limit=max_bytes)
    error: dict[str, object] = {"field": exc.path, "message": exc.message}
    if isinstance(exc, OutOfRange) and exc.sample is not None:
        # "sample", never "index": a 400 whose errors carry an "index" reads to the agent's HTTP uplink
        # as per-sample rejections (the rest stored), which this whole-batch refusal is not
        error["sample"] = exc.sample
    return Problem(400, f"invalid batch: {exc}", reason="wire_format", errors=[error])
