"""A forwarder waiting for data stops when cancelled, even when data arrives in the same instant.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of raising when the waiter is
cancelled just after the awaited event fired: a buffer ``take`` waiting that way swallowed the
agent's stop, the forwarder went on, and ``zhizao agent`` hung on SIGTERM (seen 4 times in about
10 stops by a reviewer). The buffer now waits with ``zhizao.waiting.wait_event``
(``asyncio.timeout``), which keeps the cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import SqliteBuffer
from zhizao.model import AssetPath, Sample

S = Sample(AssetPath("plant1", "a1", "line1", "cnc-1"), "spindle_speed", datetime(2026, 11, 23, tzinfo=UTC),
           1.0, "rpm")


@pytest.mark.parametrize("take", ["take", "take_encoded", "take_bulk"])
async def test_a_take_cancelled_as_data_lands_raises_cancelled(tmp_path: Path, take: str) -> None:
    async with SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.01) as buf:
        wait: Callable[[], Coroutine[Any, Any, object]] = lambda: getattr(buf, take)(100, linger=30.0)  # noqa: E731
        for _ in range(20):  # the race is per-iteration: each round must keep the cancel
            task = asyncio.create_task(wait())
            await asyncio.sleep(0.02)  # waiting for data
            await buf.put([S])  # commits, then wakes the waiter ...
            task.cancel()  # ... and the stop comes in the same loop pass
            with pytest.raises(asyncio.CancelledError):
                got = await task
                raise AssertionError(f"cancel swallowed, {take} returned {got!r}")
            while await buf.take(100, linger=0.0) is not None:  # empty it for the next round
                pass
