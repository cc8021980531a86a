"""Monotonic counters (parts, energy) turned into increments, surviving resets, rollovers and
out-of-order samples.

Increments are measured against the highest value seen so far (the running maximum), so samples
that arrive out of time order (a machine whose clock jumped back) add nothing twice. A value
below ``reset_fraction`` of that maximum is a reset to 0 (the increment is the new value) or,
when ``rollover_at`` is known and the maximum was near it, a rollover (increment =
``rollover_at - max + new``); any other drop is an out-of-order sample (no increment). Resets,
rollovers and out-of-order samples are reported so the KPI is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.kpi.series import FloatArray, Series


@dataclass(frozen=True, slots=True)
class Increments:
    """``inc[i]`` happened at ``ts[i]`` (the sample that showed it); ``cum`` is the running total
    from 0 at the first sample: a monotonic reconstruction of the counter."""

    ts: FloatArray
    inc: FloatArray
    cum: FloatArray
    resets: FloatArray
    """Timestamps of detected resets."""
    rollovers: FloatArray
    out_of_order: FloatArray
    """Timestamps of samples below the running maximum that are not resets."""


def unwrap(series: Series, *, rollover_at: float | None = None, tolerance: float = 0.0,
           reset_fraction: float = 0.5) -> Increments:
    """Increments of a monotonic counter (see the module doc). A drop of at most ``tolerance``
    is float jitter and counts as no change."""
    ts = series.ts
    n = len(series)
    if n == 0:
        e = np.empty(0, np.float64)
        return Increments(e, e, e, e, e, e)
    v = series.values.astype(np.float64)
    starts = [0]
    while True:  # one vectorised pass per reset: find where a fresh run starts
        seg = v[starts[-1]:]
        m = np.maximum.accumulate(seg)
        cand = np.nonzero((seg[1:] < reset_fraction * m[:-1]) & (seg[1:] < m[:-1] - tolerance))[0]
        if cand.size == 0:
            break
        starts.append(starts[-1] + int(cand[0]) + 1)
    starts.append(n)
    incs: list[FloatArray] = []
    resets: list[float] = []
    rolls: list[float] = []
    ooo: list[FloatArray] = []
    last_max = 0.0
    for k in range(len(starts) - 1):
        a, b = starts[k], starts[k + 1]
        seg = v[a:b]
        m = np.maximum.accumulate(seg)
        inc = np.diff(m, prepend=m[0])
        inc[inc <= tolerance] = 0.0
        if k > 0:
            if rollover_at is not None and last_max > 0.5 * rollover_at:
                inc[0] = rollover_at - last_max + seg[0]
                rolls.append(float(ts[a]))
            else:
                inc[0] = seg[0]
                resets.append(float(ts[a]))
        incs.append(inc)
        ooo.append(ts[a + 1:b][seg[1:] < m[:-1] - tolerance])
        last_max = float(m[-1])
    inc_all = np.concatenate(incs)
    return Increments(ts, inc_all, np.cumsum(inc_all), np.array(resets, np.float64),
                      np.array(rolls, np.float64), np.concatenate(ooo))


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
