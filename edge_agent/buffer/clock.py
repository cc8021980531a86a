"""Noticing steps of the wall clock, so that the buffer's ``max_age_s`` is not fooled by them.

The buffer stamps each row with the wall clock when it is committed and expires rows older than
``max_age_s`` by the same clock. An edge box without a battery-backed clock boots with a wrong
time (fake-hwclock: the last shutdown) and NTP steps it later; an operator sets a wrong clock
right. Measured by the wall clock, everything buffered before such a step looks older (a forward
step: a step of more than ``max_age_s`` would expire a backlog minutes old) or younger (a
backward step: new data looks older than the backlog, the backlog's age reads 0 and it is kept
longer than ``max_age_s``) by the step.

The true time elapsed comes from a steady clock, ``CLOCK_BOOTTIME`` (it keeps counting during
suspend; ``time.monotonic`` where it does not exist), which starts again at each boot:

- **while running**, :class:`StepDetector` compares the wall clock with it between two readings;
- **across a restart**, the buffer persists a :class:`ClockReading` (wall time, steady time and
  the kernel's boot id, ``/proc/sys/kernel/random/boot_id``) with each commit and at close;
  :func:`step_since` compares the reading at open with it. In the same boot the steady clock
  tells the time really elapsed, so a step while the agent was stopped is measured exactly like
  one while it runs. After a reboot (another boot id, or none known) the elapsed time is unknown:
  only a wall clock *earlier* than the persisted one is certain to be wrong (the clock went
  backwards, now or before the reboot) — detected and reported, nothing re-aged
  (``backward_after_reboot``); a forward step across a reboot cannot be told from the time the box
  was off.

A step is the wall clock's elapsed time minus the steady clock's; it counts beyond
:data:`TOLERANCE_S` plus 0.1 % of the steady time elapsed (NTP slews the wall clock by at most
0.05 %), so slewing and jitter never count as a step; a smaller step is missed (it changes an age
by at most that much). :class:`Clocks` is the seam through which the buffer reads all three
(tests pass their own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TOLERANCE_S = 2.0
"""Steps up to this (plus 0.1 % of the time elapsed) are not steps."""

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

StepKind = Literal["forward", "backward", "backward_after_reboot"]
STEP_KINDS: tuple[StepKind, ...] = ("forward", "backward", "backward_after_reboot")
"""``forward``/``backward``: a step measured against the steady clock (while running, or across a
restart within one boot), corrected; ``backward_after_reboot``: the wall clock earlier than at the
buffer's last use before a reboot, reported and not corrected."""


def system_wall() -> float:
    """``time.time()``, looked up at each call (a test may replace ``time.time``)."""
    return time.time()


def system_steady() -> float:
    """``CLOCK_BOOTTIME`` in seconds (``time.monotonic()`` where it does not exist)."""
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


def system_boot_id() -> str | None:
    """The kernel's boot id (a UUID drawn at each boot), ``None`` where unknown (not Linux)."""
    try:
        text = BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):  # not Linux
        return None
    return text if text and " " not in text else None


@dataclass(frozen=True, slots=True)
class Clocks:
    """The clocks the buffer reads: ``wall`` (epoch seconds: stamps and ages rows), ``steady``
    (seconds of ``CLOCK_BOOTTIME``: the true time elapsed within one boot) and ``boot_id`` (the
    kernel's id of the current boot, ``None`` where unknown: steady readings of two processes are
    compared only when both know the same boot id). The defaults read the system's."""

    wall: Callable[[], float] = system_wall
    steady: Callable[[], float] = system_steady
    boot_id: Callable[[], str | None] = system_boot_id


@dataclass(frozen=True, slots=True)
class ClockReading:
    """The three clocks read at one instant (persisted by the buffer as :meth:`text`)."""

    wall: float
    steady: float
    boot_id: str | None

    def text(self) -> str:
        """``<wall> <steady> <boot id or ->``: the form kept in the buffer's ``meta`` table."""
        return f"{self.wall!r} {self.steady!r} {self.boot_id or '-'}"

    @classmethod
    def parse(cls, text: str | None) -> ClockReading | None:
        """The reading of :meth:`text`; ``None`` for ``None`` or anything else (never an error:
        an unreadable reading is as good as none)."""
        parts = (text or "").split()
        if len(parts) != 3:
            return None
        try:
            wall, steady = float(parts[0]), float(parts[1])
        except ValueError:
            return None
        if not (math.isfinite(wall) and math.isfinite(steady)):
            return None
        return cls(wall, steady, None if parts[2] == "-" else parts[2])


def _tolerance(tolerance_s: float, elapsed: float) -> float:
    return tolerance_s + 0.001 * max(elapsed, 0.0)


def _step(last: ClockReading, now: ClockReading, tolerance_s: float) -> float:
    """The wall clock's step between two readings of one boot (signed; 0.0 within tolerance)."""
    elapsed = now.steady - last.steady
    step = (now.wall - last.wall) - elapsed
    return step if abs(step) > _tolerance(tolerance_s, elapsed) else 0.0


class StepDetector:
    """Steps of the wall clock between the readings of one process (one boot).

    :meth:`step` returns how far the wall clock stepped since the previous reading — positive
    ahead, negative back — or 0.0 (within the tolerance, see the module docstring, and at the
    first reading); :meth:`seed` sets the previous reading without asking."""

    def __init__(self, tolerance_s: float = TOLERANCE_S) -> None:
        self.tolerance_s = tolerance_s
        self._last: ClockReading | None = None

    def seed(self, reading: ClockReading) -> None:
        self._last = reading

    def step(self, now: ClockReading) -> float:
        last, self._last = self._last, now
        return 0.0 if last is None else _step(last, now, self.tolerance_s)


@dataclass(frozen=True, slots=True)
class RestartStep:
    """What :func:`step_since` found: ``seconds`` is signed (the wall clock ahead of the true
    elapsed time: positive). For ``backward_after_reboot`` it is how much earlier the wall clock
    reads now than at ``since`` (negative), not a measured step."""

    kind: StepKind
    seconds: float
    since: ClockReading
    elapsed: float | None
    """The true time elapsed since ``since`` (``None`` after a reboot: unknown)."""

    @property
    def corrected(self) -> bool:
        """Whether the buffered rows are re-aged by it (a measured step; not after a reboot)."""
        return self.kind != "backward_after_reboot"


def step_since(last: ClockReading | None, now: ClockReading,
               tolerance_s: float = TOLERANCE_S) -> RestartStep | None:
    """The wall clock's step between ``last`` (persisted by an earlier process) and ``now``, or
    ``None`` when there is none to report (see the module docstring): measured when both readings
    are of the same boot, else only a wall clock now earlier than ``last``'s beyond the tolerance."""
    if last is None:
        return None
    if last.boot_id is not None and last.boot_id == now.boot_id and now.steady >= last.steady:
        step = _step(last, now, tolerance_s)
        if not step:
            return None
        return RestartStep("forward" if step > 0 else "backward", step, last, now.steady - last.steady)
    behind = now.wall - last.wall
    if behind < -tolerance_s:
        return RestartStep("backward_after_reboot", behind, last, None)
    return None
