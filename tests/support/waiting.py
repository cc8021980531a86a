"""Waiting in async tests for something that happens eventually."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(cond: Callable[[], bool], seconds: float = 20.0, what: str = "condition", *,
                     interval: float = 0.05, in_thread: bool = False) -> None:
    """Return as soon as ``cond()`` is true; ``AssertionError`` naming ``what`` after ``seconds``.

    ``in_thread``: ``cond`` blocks (an HTTP request, a file read) and runs off the event loop."""
    deadline = time.monotonic() + seconds
    while True:
        if await asyncio.to_thread(cond) if in_thread else cond():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(interval)
