"""Sinks in front of a real buffer, and a connector running into one, for tests of MQTT subscribers
that acknowledge only after commit: the edge agent's MQTT connector (``submit``: samples) and the
gateway's intake (``submit_records``: records) alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from edge_agent.buffer import EncodedBatch, PutResult, SqliteBuffer
from edge_agent.connectors.base import ConnectorStats
from tests.support.waiting import eventually
from zhizao.model import Sample


class WrappedBuffer:
    """A sink in front of the real buffer; subclasses change what ``submit`` (or
    ``submit_records``) reports: :meth:`_passed` gets each real commit and returns what the caller sees."""

    def __init__(self, buf: SqliteBuffer) -> None:
        self.buf = buf

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        return self._passed(self.buf.submit(samples, marks), len(samples))

    def submit_records(
        self, records: Sequence[EncodedBatch], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        return self._passed(self.buf.submit_records(records, marks), len(records))

    def _passed(self, commit: asyncio.Future[PutResult], n: int) -> asyncio.Future[PutResult]:
        """What the caller gets for ``commit`` (of ``n`` samples or records)."""
        return commit

    async def marks(self, prefix: str) -> dict[str, str]:
        return await self.buf.marks(prefix)


class HeldCommits(WrappedBuffer):
    """While ``hold`` is set, a submit (samples or records, not empty) does not reach the buffer and
    its commit does not end until the test settles its future in ``held`` — a slow fsync on a
    failing SD card, which the test can then fail."""

    def __init__(self, buf: SqliteBuffer) -> None:
        super().__init__(buf)
        self.hold = False
        self.held: list[asyncio.Future[PutResult]] = []

    def _pending(self) -> asyncio.Future[PutResult]:
        fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
        self.held.append(fut)
        return fut

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        return self._pending() if samples and self.hold else super().submit(samples, marks)

    def submit_records(
        self, records: Sequence[EncodedBatch], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        return self._pending() if records and self.hold else super().submit_records(records, marks)


class CommitsThenDies(WrappedBuffer):
    """A sink whose process 'dies' between commit and PUBACK: the samples or records (and marks)
    are committed to the real buffer, but the caller is never told, so it never acknowledges the
    messages."""

    def __init__(self, buf: SqliteBuffer) -> None:
        super().__init__(buf)
        self.commits: list[asyncio.Future[PutResult]] = []

    def _passed(self, commit: asyncio.Future[PutResult], n: int) -> asyncio.Future[PutResult]:
        self.commits.append(commit)
        return asyncio.get_running_loop().create_future()  # never resolved: no PUBACK


class CountsOutstanding(WrappedBuffer):
    """Counts the samples (or records) submitted whose commit has not ended, and the most there
    ever were."""

    def __init__(self, buf: SqliteBuffer) -> None:
        super().__init__(buf)
        self.outstanding = self.most = 0

    def _passed(self, commit: asyncio.Future[PutResult], n: int) -> asyncio.Future[PutResult]:
        self.outstanding += n
        self.most = max(self.most, self.outstanding)
        commit.add_done_callback(lambda _: setattr(self, "outstanding", self.outstanding - n))
        return commit


class Subscriber(Protocol):
    """A connector in the agent's sense (the MQTT connector, the gateway's intake)."""

    @property
    def stats(self) -> ConnectorStats: ...

    def run(self, sink: Any) -> Coroutine[Any, Any, None]: ...


@contextlib.asynccontextmanager
async def running(conn: Subscriber, sink: Any) -> AsyncIterator[None]:
    """``conn`` connected and running into ``sink`` inside the block; one ``run``, cancelled at the end."""
    task = asyncio.create_task(conn.run(sink))
    try:
        await eventually(lambda: conn.stats.connected, 15)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def redelivered_while_a_commit_fails(
    publish: Callable[[int], None],
    sink: HeldCommits,
    stored: Callable[[], Sequence[Sample]],
    pending: Callable[[], bool],
    blip: Callable[[], None],
    duplicates: Callable[[], int],
) -> list[float]:
    """The scenario of a redelivery waiting on a commit that fails, for a subscriber running (and
    reconnected by its supervisor) into ``sink``: messages 0-2 stored; 3-7 read with their commit
    held (``pending()`` true once they are); the connection dropped (``blip``) and 3-7 redelivered
    (DUP) on the new one while the commit is pending (``duplicates()`` reaches 5); the commit fails;
    8-9 published. Returns the values ``stored()`` once 10 are (sorted), or after 15 s."""
    for i in range(3):
        publish(i)
    await eventually(lambda: len(stored()) == 3, 15)
    sink.hold = True
    for i in range(3, 8):
        publish(i)
    await eventually(pending, 15, "read, commit pending")
    blip()
    await eventually(lambda: duplicates() == 5, 15, "redelivered, waiting on the pending commit")
    sink.hold = False
    for fut in sink.held:
        fut.set_exception(OSError("disk I/O error"))
    for i in range(8, 10):
        publish(i)
    with contextlib.suppress(AssertionError):
        await eventually(lambda: len(stored()) >= 10, 15, "every message stored")
    await asyncio.sleep(0.3)  # nothing more comes
    return sorted(float(s.value) for s in stored() if isinstance(s.value, int | float))


async def published_across_a_full_disk(
    publish: Callable[[int], None],
    stored: Callable[[], Sequence[Sample]],
    fill: Callable[[], Awaitable[None]],
    free: Callable[[], Awaitable[None]],
    failed: Callable[[], bool],
) -> list[float]:
    """The scenario of commits failing on a full disk, for a subscriber running (and reconnected by
    its supervisor) into a buffer: messages 0-4 stored; the disk ``fill``-ed and 5-24 published
    (``failed()`` true once a commit failed; the database full: not all stored); room again
    (``free``) and 25-29 published. Returns the values ``stored()`` once 30 are (sorted)."""
    for i in range(5):
        publish(i)
    await eventually(lambda: len(stored()) == 5, 15)
    await fill()
    for i in range(5, 25):
        publish(i)
    await eventually(failed, 15, "a failed commit")
    await asyncio.sleep(0.5)
    assert len(stored()) < 25, "the database is full"
    await free()
    for i in range(25, 30):
        publish(i)
    await eventually(lambda: len(stored()) >= 30, 20, "the redeliveries stored")
    await asyncio.sleep(0.5)  # nothing more comes
    return sorted(float(s.value) for s in stored() if isinstance(s.value, int | float))
