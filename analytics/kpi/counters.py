"""Monotonic counters (parts, energy) turned into increments, surviving resets and rollovers.

A counter that goes down has been reset (to 0, so the increment over that step is the new
value) or, when ``rollover_at`` is known and the previous value was near it, has rolled over
(increment = ``rollover_at - previous + new``). Either way the increment is never negative, and
each event is counted so the KPI is flagged ``counter_reset`` / ``counter_rollover``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.kpi.series import FloatArray, Series


@dataclass(frozen=True, slots=True)
class Increments:
    """``inc[i]`` happened at ``ts[i]`` (the sample that showed it); ``cum`` is the running total
    starting at 0 at the first sample, so ``cum`` is a monotonic reconstruction of the counter."""

    ts: FloatArray
    inc: FloatArray
    cum: FloatArray
    resets: FloatArray
    """Timestamps of detected resets."""
    rollovers: FloatArray


def unwrap(series: Series, *, rollover_at: float | None = None, tolerance: float = 0.0) -> Increments:
    """Increments of a monotonic counter. A drop by more than ``tolerance`` is a reset or rollover;
    a smaller drop (float jitter) counts as no change."""
    ts = series.ts
    if len(series) == 0:
        e = np.empty(0, np.float64)
        return Increments(e, e, e, e, e)
    v = series.values.astype(np.float64)
    prev, new = v[:-1], v[1:]
    d = new - prev
    drop = d < -tolerance
    roll = np.zeros_like(drop)
    if rollover_at is not None:
        roll = drop & (prev > 0.5 * rollover_at) & (new < 0.5 * rollover_at)
    inc = np.where(drop, new, np.maximum(d, 0.0))
    inc = np.where(roll, rollover_at - prev + new if rollover_at is not None else inc, inc)
    inc_full = np.concatenate(([0.0], inc))
    cum = np.cumsum(inc_full)
    return Increments(ts, inc_full, cum, ts[1:][drop & ~roll], ts[1:][roll])


def in_window(inc: Increments, start: float, end: float) -> tuple[int, int]:
    """Index range ``[i, j)`` of increments whose sample time is in ``[start, end)``."""
    i = int(np.searchsorted(inc.ts, start, "left"))
    j = int(np.searchsorted(inc.ts, end, "left"))
    return i, j


def value_at(inc: Increments, t: FloatArray) -> FloatArray:
    """The reconstructed (unwrapped) counter at times ``t``, linear between samples,
    held flat before the first and after the last sample."""
    if len(inc.ts) == 0:
        return np.zeros_like(t)
    return np.interp(t, inc.ts, inc.cum)
