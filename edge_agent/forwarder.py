"""The forwarder: moves batches from the durable buffer to an uplink, never losing one.

Loop: ``take`` a batch → ``send`` → ``ack``. On :class:`~zhizao.errors.Unavailable` the same
batch (same id) is retried after ``Retry-After`` or a capped, jittered backoff; on
:class:`~zhizao.errors.PartialWrite` the rejected samples go to the dead-letter file and the
batch is acked; on :class:`~zhizao.errors.Rejected` the whole batch goes to the dead-letter file
and is acked (retrying cannot help). Nothing leaves the buffer any other way.

Bulk mode — when the uplink can send several batches per request (:class:`BulkUplink`, e.g. the
HTTP uplink with ``bulk = true``): ``take_bulk`` hands out several batches (the gateway's stored
agent batches, or the agent's buffer batches) within the uplink's limits, ``send_bulk`` sends them
in one request and answers per batch; each batch then follows the rules above on its own
(delivered, partly or wholly dead-lettered — and acked — or, when only that batch was unavailable,
resent). A whole request that is unavailable is resent whole (ingest deduplicates the batches it
had already stored). A batch leaves the buffer only after its own outcome said so.

A failed ack (the buffer's delete did not commit, e.g. disk full) is retried after a backoff
until it commits, counted in ``buffer_failures["ack"]`` and logged; meanwhile the delivered batch
stays taken — not sent again, and safe from the buffer's ``drop_oldest``/``max_age_s`` (which
would count delivered data as lost) — and the forwarder does not stop. A failed take (forming a
batch did not commit) is counted in ``buffer_failures["take"]``, logged and retried after the same
backoff.

Used by the edge agent and the site gateway alike: ``await Forwarder(...).run()`` until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from edge_agent.buffer import BulkLimits, EncodedBatch
from edge_agent.deadletter import DeadLetter
from edge_agent.uplinks.base import EncodedUplink, Uplink
from zhizao import wire
from zhizao.backoff import Backoff
from zhizao.errors import PartialWrite, Rejected, Unavailable
from zhizao.model import Batch

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ForwarderStats:
    """Counters of one forwarder (exported as metrics)."""

    sent_samples: int = 0
    sent_batches: int = 0
    dead_lettered: int = 0
    retries: int = 0
    buffer_failures: dict[str, int] = field(default_factory=lambda: {"take": 0, "ack": 0, "deadletter": 0})
    """Buffer operations that failed, by operation: ``take`` (retried), ``ack`` of delivered
    batches (retried; the batches stay taken), ``deadletter`` — writing a batch's rejected samples to
    the dead-letter file (the batch is kept and sent again)."""
    last_latency_s: float = 0.0
    last_success: float | None = None
    up: bool = True


class BatchSource(Protocol):
    """Where a forwarder takes batches from (the agent's or the gateway's
    :class:`~edge_agent.buffer.SqliteBuffer`). ``take`` returns ``None``, ``take_bulk`` an empty
    list, when nothing came within ``linger`` seconds; every batch taken is later either
    ``ack``-ed (delivered: it may be deleted) or ``release``-d (undelivered: it is taken again
    first, under the same id)."""

    async def take(self, max_items: int, linger: float = 0.0) -> Batch | None: ...

    async def take_bulk(
        self, max_items: int, limits: BulkLimits | None = None, linger: float = 0.0
    ) -> list[EncodedBatch]: ...

    async def ack(self, batch: Batch | EncodedBatch) -> None: ...

    async def ack_many(self, batches: Sequence[Batch | EncodedBatch]) -> None: ...

    def release(self, batch: Batch | EncodedBatch) -> None: ...


@runtime_checkable
class BulkUplink(Protocol):
    """An uplink sending several stored batches per request; ``bulk`` (its limits) is ``None``
    while bulk sending is off. ``send_bulk`` returns one outcome per batch, in order: ``None``
    (delivered), ``PartialWrite``, ``Rejected``, or ``Unavailable`` (that batch only: resend it);
    it raises ``Unavailable`` when the whole request must be resent."""

    bulk: BulkLimits | None

    async def send_bulk(
        self, batches: Sequence[EncodedBatch]
    ) -> list[PartialWrite | Rejected | Unavailable | None]: ...


_ONE: BulkLimits = BulkLimits(max_batches=1)


class Forwarder:
    """See the module docstring. ``stats`` is updated as batches flow."""

    def __init__(
        self,
        buffer: BatchSource,
        uplink: Uplink,
        deadletter: DeadLetter,
        *,
        max_items: int = 5000,
        linger: float = 1.0,
        backoff: Backoff | None = None,
        window: int = 2,
    ) -> None:
        self.buffer = buffer
        self.uplink = uplink
        self.deadletter = deadletter
        self.max_items = max_items
        self.linger = linger
        self.backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self.buffer_backoff = Backoff(initial=0.5, cap=30.0)
        """Pause after a failed take or ack (reset by the next ack that works)."""
        self.window = window
        self.stats = ForwarderStats()
        self.observe_latency: Callable[[float], None] | None = None
        self._encoded = uplink if isinstance(uplink, EncodedUplink) else None
        self._bulk = uplink if isinstance(uplink, BulkUplink) and uplink.bulk is not None else None

    async def run(self) -> None:
        """Forward until cancelled, with up to ``window`` batches on the wire at once (each acked
        in the buffer only after the receiver acknowledged it), so reading the buffer, sending and
        acking overlap and a backlog drains at wire speed. Cancelling hands unsent batches back."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                if self._bulk is not None:
                    inflight = await self._free_slot(inflight)  # first: the take then holds all that waited
                    try:
                        items = await self.buffer.take_bulk(
                            self.max_items, self._bulk.bulk or _ONE, self.linger)
                    except Exception as exc:  # noqa: BLE001 - the buffer's failure: logged, retried
                        await self._buffer_failed("take", exc)
                        continue
                    if items:
                        inflight.add(asyncio.create_task(self.deliver_bulk(items)))
                    continue
                try:
                    batch = await self._take()
                except Exception as exc:  # noqa: BLE001 - the buffer's failure: logged, retried
                    await self._buffer_failed("take", exc)
                    continue
                if batch is None:
                    continue
                inflight = await self._free_slot(inflight)
                inflight.add(asyncio.create_task(self.deliver(batch)))
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def _free_slot(self, inflight: set[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """``inflight`` with fewer than ``window`` tasks: waits for one to finish when it is full
        (a failed delivery — a bug — raises here)."""
        if len(inflight) < self.window:
            return inflight
        done, pending = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        return pending

    async def _take(self) -> Batch | EncodedBatch | None:
        if self._encoded is not None:  # stored records too, one at a time
            got = await self.buffer.take_bulk(self.max_items, _ONE, self.linger)
            return got[0] if got else None
        return await self.buffer.take(self.max_items, self.linger)

    async def _send(self, batch: Batch | EncodedBatch) -> None:
        if isinstance(batch, EncodedBatch):
            assert self._encoded is not None
            await self._encoded.send_encoded(batch)
        else:
            await self.uplink.send(batch)

    async def deliver(self, batch: Batch | EncodedBatch, *, ack: bool = True) -> None:
        """Send one batch until the receiver has it (or refused it for good), then ack it in the
        buffer (``ack=False``: the caller acks it)."""
        try:
            while True:
                started = time.perf_counter()
                try:
                    await self._send(batch)
                except Unavailable as exc:
                    await self._unavailable(exc, batch)
                    continue
                except PartialWrite as exc:
                    if not await self._kept(batch, exc.rejected):
                        continue
                    self._sent(batch, len(batch) - len(exc.rejected), started)
                    break
                except Rejected as exc:
                    log.error(
                        "uplink %s rejected batch %s for good: %s", self.uplink.name, batch.batch_id, exc
                    )
                    if not await self._kept(batch, dict.fromkeys(range(len(batch)), str(exc))):
                        continue
                    self._sent(batch, 0, started)
                    break
                self._sent(batch, len(batch), started)
                break
        except BaseException:
            self.buffer.release(batch)
            raise
        if ack:
            await self._ack([batch])

    async def deliver_bulk(self, batches: Sequence[EncodedBatch]) -> None:
        """Send ``batches`` in bulk requests until each has its outcome (see the module
        docstring); each is acked once its outcome is final, the rest released on cancel."""
        assert self._bulk is not None
        pending = list(batches)
        try:
            while pending:
                started = time.perf_counter()
                try:
                    outcomes = await self._bulk.send_bulk(pending)
                except Unavailable as exc:
                    await self._unavailable(exc, pending[0])
                    continue
                final: list[EncodedBatch] = []
                retry: list[EncodedBatch] = []
                unwritten: OSError | None = None  # a dead-letter write failed: those batches stay
                for batch, outcome in zip(pending, outcomes, strict=True):
                    if isinstance(outcome, Unavailable):
                        retry.append(batch)
                        continue
                    if outcome is None:
                        self._sent(batch, len(batch), started)
                        final.append(batch)
                        continue
                    if isinstance(outcome, PartialWrite):
                        rejected, accepted = outcome.rejected, len(batch) - len(outcome.rejected)
                    else:
                        log.error("uplink %s rejected batch %s for good: %s", self.uplink.name,
                                  batch.batch_id, outcome)
                        rejected, accepted = dict.fromkeys(range(len(batch)), str(outcome)), 0
                    try:
                        self._dead_letter(batch, rejected)
                    except OSError as exc:
                        unwritten = exc
                        retry.append(batch)
                        continue
                    self._sent(batch, accepted, started)
                    final.append(batch)
                pending = retry  # the final ones are acked
                if final:
                    await self._ack(final)
                if unwritten is not None:
                    await self._buffer_failed("deadletter", unwritten, self._unwritten_consequence(retry[0]))
                elif retry:
                    first = next(o for o in outcomes if isinstance(o, Unavailable))
                    await self._unavailable(first, retry[0])
        except BaseException:
            for batch in pending:
                self.buffer.release(batch)
            raise

    async def _ack(self, batches: Sequence[Batch | EncodedBatch]) -> None:
        """Ack delivered ``batches`` in the buffer. If that fails (the delete did not commit: disk
        full) it is counted, logged and retried after a backoff until it commits; the batches stay
        taken meanwhile (see the module docstring). On cancel they are released (a cancelled ack
        may or may not have committed: at worst they are sent once more, and the receiver answers
        them as duplicates)."""
        try:
            while True:
                try:
                    await self.buffer.ack_many(batches)
                    break
                except Exception as exc:  # noqa: BLE001 - whatever the buffer raised: retried
                    await self._buffer_failed("ack", exc, f"{len(batches)} delivered batches (first "
                                              f"{batches[0].batch_id}) stay in the buffer, not sent "
                                              "again; the ack is retried")
        except BaseException:
            for batch in batches:
                self.buffer.release(batch)
            raise
        self.buffer_backoff.reset()

    async def _kept(self, batch: Batch | EncodedBatch, rejected: dict[int, str]) -> bool:
        """Dead-letter ``rejected`` of ``batch``; if the file cannot be written (disk full), count,
        log and back off, and return False: the batch is not acked, and is sent again."""
        try:
            self._dead_letter(batch, rejected)
        except OSError as exc:
            await self._buffer_failed("deadletter", exc, self._unwritten_consequence(batch))
            return False
        return True

    def _unwritten_consequence(self, batch: Batch | EncodedBatch) -> str:
        return (f"the rejected samples of batch {batch.batch_id} could not be written to "
                f"{self.deadletter.path}; the batch stays in the buffer and is sent again")

    async def _buffer_failed(self, op: str, exc: Exception, consequence: str = "") -> None:
        """Count, log and back off after a failed buffer ``op``."""
        self.stats.buffer_failures[op] += 1
        delay = self.buffer_backoff.next()
        log.error("buffer %s failed: %r; %sretrying in %.1f s", op, exc,
                  f"{consequence}; " if consequence else "", delay)
        await asyncio.sleep(delay)

    async def _unavailable(self, exc: Unavailable, batch: Batch | EncodedBatch) -> None:
        delay = exc.retry_after if exc.retry_after is not None else self.backoff.next()
        self.stats.retries += 1
        if self.stats.up:
            log.warning("uplink %s unavailable (%s); batch %s kept, retrying", self.uplink.name, exc,
                        batch.batch_id)
        self.stats.up = False
        await asyncio.sleep(delay)

    def _sent(self, batch: Batch | EncodedBatch, accepted: int, started: float) -> None:
        if not self.stats.up:
            log.info("uplink %s is back; resuming at batch %s", self.uplink.name, batch.batch_id)
        self.stats.up = True
        self.backoff.reset()
        self.stats.sent_samples += accepted
        self.stats.sent_batches += 1
        self.stats.last_latency_s = time.perf_counter() - started
        if self.observe_latency is not None:
            self.observe_latency(self.stats.last_latency_s)
        self.stats.last_success = time.time()

    def _dead_letter(self, batch: Batch | EncodedBatch, rejected: dict[int, str]) -> None:
        stored = batch.samples_json() if isinstance(batch, EncodedBatch) else None
        for index, reason in sorted(rejected.items()):
            sample: object = None
            if stored is not None:
                sample = stored[index] if 0 <= index < len(stored) else None  # the sample's wire JSON
            elif isinstance(batch, Batch) and 0 <= index < len(batch):
                sample = wire.sample_to_dict(batch.samples[index])
            self.deadletter.write(
                "rejected_sample",
                reason,
                producer=batch.producer,
                batch_id=batch.batch_id,
                index=index,
                sample=sample,
            )
        self.stats.dead_lettered += len(rejected)
        log.warning(
            "uplink %s: %d samples of batch %s rejected, kept in %s",
            self.uplink.name,
            len(rejected),
            batch.batch_id,
            self.deadletter.path,
        )
