"""Noticing steps of the wall clock, so that the buffer's ``max_age_s`` is not fooled by them.

The buffer stamps each row with the wall clock (``time.time()``) when it is committed and
expires rows older than ``max_age_s`` by the same clock. An edge box without a battery-backed
clock boots with a wrong time (fake-hwclock: the last shutdown) and NTP steps it forward later:
measured by the wall clock, everything buffered before the step suddenly looks older by the
step, and a step of more than ``max_age_s`` would expire the whole backlog although it is minutes
old. :class:`StepDetector` compares the wall clock with a steady clock (``CLOCK_BOOTTIME``, which
keeps counting during suspend; ``time.monotonic`` where it does not exist) between observations:
the wall clock running ahead of it by more than a tolerance is a forward step.

Backward steps need nothing: rows then look younger and are kept longer, never dropped early.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def _steady() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class StepDetector:
    """``forward_step(wall_now)`` returns how far the wall clock jumped ahead of the steady clock
    since the previous call (0.0 when it did not, and at the first call).

    Tolerance: ``tolerance_s`` plus 0.1 % of the steady time elapsed (NTP slews the wall clock by
    at most 0.05 %), so slewing and jitter never count as a step; a step smaller than that is
    missed (it shortens the age by at most that much)."""

    def __init__(self, tolerance_s: float = 2.0, steady: Callable[[], float] = _steady) -> None:
        self.tolerance_s = tolerance_s
        self._steady = steady
        self._last: tuple[float, float] | None = None

    def forward_step(self, wall_now: float) -> float:
        steady_now = self._steady()
        last, self._last = self._last, (wall_now, steady_now)
        if last is None:
            return 0.0
        ahead = (wall_now - last[0]) - (steady_now - last[1])
        return ahead if ahead > self.tolerance_s + 0.001 * (steady_now - last[1]) else 0.0
