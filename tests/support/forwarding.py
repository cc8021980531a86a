"""Running a forwarder in a test until its buffer is delivered."""

from __future__ import annotations

import asyncio

from edge_agent.buffer import SqliteBuffer
from edge_agent.forwarder import Forwarder
from tests.support.waiting import eventually


async def drain(fwd: Forwarder, buf: SqliteBuffer, seconds: float = 30.0) -> None:
    """Run ``fwd`` until ``buf`` is empty (``seconds`` at most, else ``AssertionError``), then stop it."""
    task = asyncio.create_task(fwd.run())
    try:
        await eventually(lambda: buf.stats.backlog_samples == 0, seconds, "the buffer drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
