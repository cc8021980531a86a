"""Data-quality checks run on the telemetry behind every KPI: gaps, counter resets and
rollovers, bad-quality samples, clock skew.

A flag is a small dict ``{"kind": ..., ...details}`` with its units in the key names; a KPI
record carries ``data_quality: {"ok": bool, "flags": [...]}``. Kinds:
``telemetry_gap`` (signal, gap_s, count), ``no_data`` (signal), ``counter_reset`` (signal,
count), ``counter_rollover`` (signal, count), ``bad_quality_samples`` (signal, count),
``clock_skew`` (offset_s, corrected), ``unknown_state`` (unknown_time_s), ``off_in_planned_time``
(off_time_s), ``missing_ideal_cycle_time`` (product, count), ``count_mismatch`` (total vs good+scrap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analytics.kpi.series import Series
from analytics.kpi.timeline import OFF, state_codes

Flag = dict[str, Any]


def gap_seconds(series: Series, start: float, end: float, threshold_s: float) -> tuple[float, int]:
    """Seconds of ``[start, end)`` not covered by samples spaced at most ``threshold_s`` apart,
    and the number of such gaps (a missing head or tail counts as a gap too)."""
    ts = series.ts
    i, j = np.searchsorted(ts, [start, end], "left")
    inside = ts[i:j]
    if inside.size == 0:
        # A sample before the window still tells the value, but nothing arrived for the whole window.
        return (end - start, 1) if end - start > threshold_s else (0.0, 0)
    before = ts[i - 1] if i > 0 else None
    pts = np.concatenate(([before if before is not None else start], inside, [end]))
    d = np.diff(pts)
    if before is None:
        d[0] = inside[0] - start
    big = d > threshold_s
    # The excess over the expected spacing is what is missing.
    return float(np.sum(d[big] - 0.0)), int(np.count_nonzero(big))


def skew_offset(state: Series, planned_edges: list[tuple[float, float]], max_skew_s: float) -> float | None:
    """Estimate a machine's clock offset (reported - true, seconds) from its ``off`` transitions:
    a machine leaves ``off`` when planned time starts and returns to it when planned time ends,
    so its reported transitions sit ``offset`` away from the calendar's edges. ``None`` when no
    transition lies within ``max_skew_s`` of an edge."""
    codes = state_codes(state)
    if len(codes) < 2:
        return None
    prev, cur = codes[:-1], codes[1:]
    t = state.ts[1:]
    wake = t[(prev == OFF) & (cur != OFF)]
    sleep = t[(prev != OFF) & (cur == OFF)]
    offsets: list[float] = []
    for a, b in planned_edges:
        for edge, cand in ((a, wake), (b, sleep)):
            if cand.size == 0:
                continue
            k = int(np.argmin(np.abs(cand - edge)))
            if abs(cand[k] - edge) <= max_skew_s:
                offsets.append(float(cand[k] - edge))
    if not offsets:
        return None
    return float(np.median(offsets))


def summarise(flags: list[Flag]) -> dict[str, Any]:
    return {"ok": not flags, "flags": flags}
