"""The forwarder: moves batches from the durable buffer to an uplink, never losing one.

Loop: ``take`` a batch → ``send`` → ``ack``. On :class:`~zhizao.errors.Unavailable` the same
batch (same id) is retried after ``Retry-After`` or a capped, jittered backoff; on
:class:`~zhizao.errors.PartialWrite` the rejected samples go to the dead-letter file and the
batch is acked; on :class:`~zhizao.errors.Rejected` the whole batch goes to the dead-letter file
and is acked (retrying cannot help). Nothing leaves the buffer any other way.

Used by the edge agent and the site gateway alike: ``await Forwarder(...).run()`` until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from edge_agent.buffer import EncodedBatch
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
    last_latency_s: float = 0.0
    last_success: float | None = None
    up: bool = True


class BatchSource(Protocol):
    """Where a forwarder takes batches from: the agent's :class:`~edge_agent.buffer.SqliteBuffer`,
    or the gateway's frame reader over one. ``take``/``take_encoded`` return ``None`` when nothing
    came within ``linger`` seconds; every batch taken is later either ``ack``-ed (delivered: it may
    be deleted) or ``release``-d (undelivered: it is taken again first, under the same id)."""

    async def take(self, max_items: int, linger: float = 0.0) -> Batch | None: ...

    async def take_encoded(self, max_items: int, linger: float = 0.0) -> EncodedBatch | None: ...

    async def ack(self, batch: Batch | EncodedBatch) -> None: ...

    def release(self, batch: Batch | EncodedBatch) -> None: ...


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
        self.window = window
        self.stats = ForwarderStats()
        self.observe_latency: Callable[[float], None] | None = None
        self._encoded = uplink if isinstance(uplink, EncodedUplink) else None

    async def run(self) -> None:
        """Forward until cancelled, with up to ``window`` batches on the wire at once (each acked
        in the buffer only after the receiver acknowledged it), so reading the buffer, sending and
        acking overlap and a backlog drains at wire speed. Cancelling hands unsent batches back."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                batch = await self._take()
                if batch is None:
                    continue
                if len(inflight) >= self.window:
                    done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                inflight.add(asyncio.create_task(self.deliver(batch)))
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def _take(self) -> Batch | EncodedBatch | None:
        if self._encoded is not None:
            return await self.buffer.take_encoded(self.max_items, self.linger)
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
                    delay = exc.retry_after if exc.retry_after is not None else self.backoff.next()
                    self.stats.retries += 1
                    if self.stats.up:
                        log.warning(
                            "uplink %s unavailable (%s); batch %s kept, retrying",
                            self.uplink.name,
                            exc,
                            batch.batch_id,
                        )
                    self.stats.up = False
                    await asyncio.sleep(delay)
                    continue
                except PartialWrite as exc:
                    self._dead_letter(batch, exc.rejected)
                    self._sent(batch, len(batch) - len(exc.rejected), started)
                    break
                except Rejected as exc:
                    log.error(
                        "uplink %s rejected batch %s for good: %s", self.uplink.name, batch.batch_id, exc
                    )
                    self._dead_letter(batch, dict.fromkeys(range(len(batch)), str(exc)))
                    self._sent(batch, 0, started)
                    break
                self._sent(batch, len(batch), started)
                break
        except BaseException:
            self.buffer.release(batch)
            raise
        if ack:
            await self.buffer.ack(batch)

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
        for index, reason in sorted(rejected.items()):
            sample: object = None
            if 0 <= index < len(batch):
                if isinstance(batch, EncodedBatch):
                    sample = orjson.loads(batch.rows[index])  # the row is the sample's wire JSON
                else:
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
