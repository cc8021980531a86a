"""A delivered batch whose ack fails in the buffer (its delete does not commit: disk full) is sent
again — the receiver deduplicates it — and the forwarder keeps going.

Before the fix the ack ran outside ``deliver``'s error handling: the failure ended the forwarder
(the agent restarts it), and the batch stayed marked as taken in the buffer, so it was never sent
again until the process restarted. Real buffer on a real SQLite file; the disk fills for real
(``RLIMIT_FSIZE``, see ``test_buffer_failures``) right when the receiver acknowledges the first
batch, and has room again when that batch is sent again.
"""

from __future__ import annotations

import asyncio
import resource
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest

from edge_agent.buffer import BulkLimits, EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from tests.edge_agent.test_buffer import samples
from zhizao.errors import PartialWrite, Rejected, Unavailable
from zhizao.model import Batch


class DiskFillsOnFirstAck:
    """A receiver in memory, deduplicating on (producer, batch_id). When it acknowledges the
    first batch, the agent's disk fills (every write of this process beyond byte 1 fails); the
    disk has room again when that batch comes back."""

    name = "disk-fills"

    def __init__(self, bulk: BulkLimits | None) -> None:
        self.bulk = bulk
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
        if len(self.posts) == 1:
            assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
            self._saved = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1, self._saved[1]))

    async def send(self, batch: Batch) -> None:
        self._receive(batch)

    async def send_bulk(
        self, batches: Sequence[EncodedBatch]
    ) -> list[PartialWrite | Rejected | Unavailable | None]:
        for b in batches:
            self._receive(b)
        return [None] * len(batches)


@pytest.mark.parametrize("bulk", [None, BulkLimits(max_batches=4)], ids=["single", "bulk"])
async def test_a_failed_ack_sends_the_batch_again_and_the_forwarder_goes_on(
    tmp_path: Path, bulk: BulkLimits | None, caplog: pytest.LogCaptureFixture
) -> None:
    uplink = DiskFillsOnFirstAck(bulk)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.01) as buf, uplink:
        await buf.put(samples(250))
        fwd = Forwarder(buf, uplink, DeadLetter(tmp_path / "dead.jsonl"), max_items=100, linger=0.05,
                        window=1)
        restarts = 0

        async def supervised() -> None:  # as the agent runs it: restarted when it fails
            nonlocal restarts
            while True:
                try:
                    await fwd.run()
                except Exception:  # counted: the test wants none
                    restarts += 1
                    await asyncio.sleep(0.1)

        task = asyncio.create_task(supervised())
        try:
            for _ in range(200):
                if buf.stats.backlog_samples == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            uplink.free_disk()
        first = uplink.posts[0]
        assert uplink.posts.count(first) >= 2, f"the batch whose ack failed was not resent: {uplink.posts}"
        assert buf.stats.backlog_samples == 0, "a delivered batch stayed in the buffer, never sent again"
        assert sum(uplink.stored.values()) == 250 and buf.stats.acked == 250
        assert fwd.stats.buffer_failures["ack"] >= 1 and restarts == 0, "the forwarder must go on"
        assert "sent again (the receiver deduplicates them)" in caplog.text
