"""Waiting for an ``asyncio.Event`` with a time limit, without losing a cancel.

``asyncio.wait_for`` on Python 3.11 returns normally when its task is cancelled just after the
awaited event fired, swallowing the cancel: a loop waiting that way (the agent's forwarder) then
never stopped, and the agent hung on SIGTERM. ``asyncio.timeout`` keeps the cancel; this is that,
in one place.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` passed; True if it is set. A cancel is raised."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
