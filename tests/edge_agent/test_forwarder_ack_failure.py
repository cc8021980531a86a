"""A delivered batch whose ack fails in the buffer (its delete does not commit: disk full): the ack
is retried until it commits, the batch stays taken meanwhile — not sent again, not counted twice,
and not deleted by the buffer's drops as if it were lost — and the forwarder keeps going.

Session 14's code ran the ack outside ``deliver``'s error handling: the failure ended the forwarder
and the batch stayed taken until the process restarted. Its first fix released the batch to be
sent again, which counted it as sent twice and let ``drop_oldest`` delete (and count as lost) a
batch the receiver had. Real buffer on a real SQLite file; the disk fills for real
(``RLIMIT_FSIZE``, see ``test_buffer_failures``) right when the receiver acknowledges the first
batch, for a second. The dead-letter file when it cannot be written is tested here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from edge_agent.buffer import BulkLimits, EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from tests.edge_agent.test_buffer import samples
from tests.support.waiting import eventually
from zhizao.errors import PartialWrite, Rejected, Unavailable
from zhizao.model import Batch


class DiskFillsOnFirstAck:
    """A receiver in memory, deduplicating on (producer, batch_id). When it acknowledges the
    first batch, the agent's disk fills (every write of this process beyond byte 1 fails) for
    ``full_s`` seconds, or until that batch comes back (``full_s`` None: it never fills)."""

    name = "disk-fills"

    def __init__(self, bulk: BulkLimits | None, full_s: float | None = 1.0) -> None:
        self.bulk = bulk
        self.full_s = full_s
        self.stored: dict[tuple[str, str], int] = {}
        self.posts: list[str] = []
        self._saved: tuple[int, int] | None = None

    async def __aenter__(self) -> DiskFillsOnFirstAck:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.free_disk()

    def free_disk(self) -> None:
        if self._saved is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, self._saved)
            self._saved = None

    def _receive(self, batch: Batch | EncodedBatch) -> None:
        if self.posts and batch.batch_id == self.posts[0]:
            self.free_disk()
        self.posts.append(batch.batch_id)
        self.stored.setdefault((batch.producer, batch.batch_id), len(batch))
        if len(self.posts) == 1 and self.full_s is not None:
            assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
            self._saved = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1, self._saved[1]))
            asyncio.get_running_loop().call_later(self.full_s, self.free_disk)

    async def send(self, batch: Batch) -> None:
        self._receive(batch)

    async def send_bulk(
        self, batches: Sequence[EncodedBatch]
    ) -> list[PartialWrite | Rejected | Unavailable | None]:
        for b in batches:
            self._receive(b)
        return [None] * len(batches)


async def _drained(fwd: Forwarder, buf: SqliteBuffer) -> int:
    """Run ``fwd`` as the agent does (restarted if it fails) until ``buf`` is empty (at most 10 s);
    returns how many times it failed and was restarted (the tests want none)."""
    restarts = 0

    async def supervised() -> None:
        nonlocal restarts
        while True:
            try:
                await fwd.run()
            except Exception:
                restarts += 1
                await asyncio.sleep(0.1)

    task = asyncio.create_task(supervised())
    try:
        with contextlib.suppress(AssertionError):  # the caller's assertions say what is missing
            await eventually(lambda: buf.stats.backlog_samples == 0, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return restarts


@pytest.mark.parametrize("bulk", [None, BulkLimits(max_batches=4)], ids=["single", "bulk"])
async def test_a_failed_ack_is_retried_until_it_commits_and_the_batch_is_not_sent_again(
    tmp_path: Path, bulk: BulkLimits | None, caplog: pytest.LogCaptureFixture
) -> None:
    uplink = DiskFillsOnFirstAck(bulk)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01) as buf, uplink:
        await buf.put(samples(250))
        fwd = Forwarder(buf, uplink, DeadLetter(tmp_path / "dead.jsonl"), max_items=100, linger=0.05,
                        window=1)
        try:
            restarts = await _drained(fwd, buf)
        finally:
            uplink.free_disk()
        assert len(uplink.posts) == len(set(uplink.posts)), f"a batch was sent again: {uplink.posts}"
        assert buf.stats.backlog_samples == 0, "a delivered batch stayed in the buffer"
        assert sum(uplink.stored.values()) == 250 and buf.stats.acked == 250
        assert fwd.stats.sent_samples == 250 and fwd.stats.sent_batches == len(uplink.posts)
        assert fwd.stats.buffer_failures["ack"] >= 1 and restarts == 0, "the forwarder must go on"
        assert "not sent again; the ack is retried" in caplog.text


class RejectsFirstSample:
    """A receiver in memory that stores every batch but its first sample (a PartialWrite, as ingest
    answers a batch with one bad sample — and again, the same, for a duplicate). With
    ``fill_disk`` the agent's disk fills when it answers the first batch and has room again when
    that batch comes back."""

    name = "rejects-first"

    def __init__(self, *, fill_disk: bool, bulk: BulkLimits | None = None) -> None:
        self.bulk = bulk
        self.disk = DiskFillsOnFirstAck(None) if fill_disk else None
        self.posts: list[str] = []

    async def __aenter__(self) -> RejectsFirstSample:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.disk is not None:
            self.disk.free_disk()

    def _receive(self, batch: Batch | EncodedBatch) -> PartialWrite:
        if self.disk is not None:
            self.disk._receive(batch)
        self.posts.append(batch.batch_id)
        return PartialWrite(len(batch) - 1, {0: "unit: unknown"})

    async def send(self, batch: Batch) -> None:
        raise self._receive(batch)

    async def send_bulk(
        self, batches: Sequence[EncodedBatch]
    ) -> list[PartialWrite | Rejected | Unavailable | None]:
        return [self._receive(b) for b in batches]


class AckFails(SqliteBuffer):
    """The real buffer, whose acks fail (their delete does not commit: an I/O error) while
    ``failing`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = asyncio.Event()

    async def ack_many(self, batches: Sequence[Batch | EncodedBatch]) -> None:
        if self.failing.is_set():
            raise OSError("disk I/O error")
        await super().ack_many(batches)


async def test_a_batch_whose_ack_failed_is_neither_sent_nor_counted_nor_dead_lettered_twice(
    tmp_path: Path,
) -> None:
    """Each batch has one rejected sample; the first ack fails for 0.3 s. Each batch is sent
    once, counted as sent once and its rejected sample dead-lettered once."""
    uplink = RejectsFirstSample(fill_disk=False)
    dead = DeadLetter(tmp_path / "dead.jsonl")
    async with AckFails(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01) as buf, uplink:
        buf.failing.set()
        asyncio.get_running_loop().call_later(0.3, buf.failing.clear)
        await buf.put(samples(250))
        fwd = Forwarder(buf, uplink, dead, max_items=100, linger=0.05, window=1)
        restarts = await _drained(fwd, buf)
    batches = len(set(uplink.posts))
    assert len(uplink.posts) == batches == 3 and restarts == 0
    assert fwd.stats.buffer_failures["ack"] >= 1
    assert fwd.stats.sent_batches == batches and fwd.stats.sent_samples == 250 - batches
    assert fwd.stats.dead_lettered == batches == len(dead.read()) == dead.counts["rejected_sample"]


async def test_a_delivered_batch_whose_ack_fails_is_never_dropped_as_lost(tmp_path: Path) -> None:
    """While the first batch's ack fails, new data overflows the buffer (drop_oldest): what the
    buffer drops and counts as lost must be data the receiver does not have — every sample is
    either stored by the receiver or counted as dropped, never both, never neither. (A batch
    released after a failed ack could be dropped and counted as overflow although delivered.)"""
    uplink = DiskFillsOnFirstAck(None, full_s=None)  # a receiver in memory
    async with AckFails(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01,
                        overflow="drop_oldest") as buf, uplink:
        buf.failing.set()
        await buf.put(samples(250))
        buf.max_bytes = int(buf.stats.backlog_bytes / 250 * 300)
        fwd = Forwarder(buf, uplink, DeadLetter(tmp_path / "dead.jsonl"), max_items=100, linger=0.05,
                        window=1)
        task = asyncio.create_task(fwd.run())
        try:
            await eventually(lambda: fwd.stats.buffer_failures["ack"] > 0, 5, "the first ack failing")
            await buf.put(samples(200, start=250))  # 450 > 300: the oldest are dropped
            await asyncio.sleep(0.3)
            buf.failing.clear()
            await eventually(lambda: buf.stats.backlog_samples == 0, 10, "the backlog delivered")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        dropped = buf.stats.dropped["overflow"]
    stored = sum(uplink.stored.values())
    assert dropped > 0, "the test needs an overflow"
    assert stored + dropped == 450, f"stored {stored} + counted as dropped {dropped} != 450 read"


@pytest.mark.parametrize("bulk", [None, BulkLimits(max_batches=4)], ids=["single", "bulk"])
async def test_a_dead_letter_file_that_cannot_be_written_keeps_the_batch_and_the_forwarder_goes_on(
    tmp_path: Path, bulk: BulkLimits | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills as the receiver answers the first batch with a rejected sample: its dead
    letter cannot be written. The batch is not acked (its rejected sample would be lost without a
    trace): counted in buffer_failures["deadletter"], logged, sent again after a backoff, and
    dead-lettered once the disk has room — the forwarder is not restarted, nothing counted that
    was not written (the old code counted the dead letter, then the forwarder failed and was
    restarted)."""
    uplink = RejectsFirstSample(fill_disk=True, bulk=bulk)
    dead = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01) as buf, uplink:
        await buf.put(samples(250))
        fwd = Forwarder(buf, uplink, dead, max_items=100, linger=0.05, window=1)
        restarts = await _drained(fwd, buf)
        assert uplink.disk is not None
        uplink.disk.free_disk()
    batches = len(set(uplink.posts))
    assert uplink.posts.count(uplink.posts[0]) == 2 and restarts == 0
    assert fwd.stats.buffer_failures["deadletter"] == 1 and buf.stats.acked == 250
    assert fwd.stats.dead_lettered == batches == len(dead.read()) == dead.counts["rejected_sample"]
    assert "could not be written" in caplog.text and "sent again" in caplog.text
