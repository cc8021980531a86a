"""Sinks in front of a real buffer, and a connector running into one, for tests of MQTT subscribers
that acknowledge only after commit: the edge agent's MQTT connector (``submit``: samples) and the
gateway's intake (``submit_records``: records) alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
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
