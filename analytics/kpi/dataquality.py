"""Data-quality checks run on the telemetry behind every KPI: gaps, counter resets and
rollovers, bad-quality samples, clock skew.

A flag is a small dict ``{"kind": ..., ...details}`` with its units in the key names; a KPI
record carries ``data_quality: {"ok": bool, "flags": [...]}``. Kinds:
``telemetry_gap`` (signal, gap_s, count), ``no_data`` (signal), ``counter_reset`` (signal,
count), ``counter_rollover`` (signal, count), ``bad_quality_samples`` (signal, count),
``clock_skew`` (offset_s, corrected), ``unknown_state`` (unknown_time_s), ``off_in_planned_time``
(off_time_s), ``missing_ideal_cycle_time`` (product, count), ``count_mismatch`` (total vs good+scrap).
A flag marked ``kpi_input: False`` (a gap in a signal no KPI is computed from: a process signal,
an anomaly score) is reported but leaves ``ok`` true: the KPIs are as good without it.

A clock running ahead by O s for at most O s is flagged ``telemetry_gap``, not ``clock_skew``: its
samples land where the corrected clock reports the same instants again, one point per instant is
kept (InfluxDB; ``source.to_series`` for DuckDB, so both agree), and the series left is that of a
loss. The precise limit is in ``analytics/kpi/README.md`` ("Data quality").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analytics.kpi.series import Series

Flag = dict[str, Any]


def gap_seconds(series: Series, start: float, end: float, threshold_s: float) -> tuple[float, int]:
    """Seconds of ``[start, end)`` not covered by samples spaced at most ``threshold_s`` apart,
    and the number of such gaps (a missing head or tail counts as a gap too; a gap that began
    before ``start`` counts its part from ``start`` on)."""
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
    # A gap that began before the window counts only its part inside the window.
    d[0] = min(d[0], inside[0] - start)
    return float(np.sum(d[big])), int(np.count_nonzero(big))


def clock_jumps(counter: Series, start: float, end: float) -> list[tuple[float, float]]:
    """Jumps of a machine's clock seen in a per-tick, always-rising counter (``energy_kwh``):
    ``(reported time, offset_s)``; positive = the clock jumped ahead, negative = back.

    Ahead: a long silence across which the counter rose as little as in one normal interval
    (no time passed for the machine). Back: one interval in which the counter rose as much as
    in many (the points between were overwritten or interleaved by the older, skewed ones).
    The rate is compared with both neighbouring intervals, so state changes do not trigger it."""
    i, j = np.searchsorted(counter.ts, [start, end], "left")
    ts, v = counter.ts[max(i - 1, 0):j], counter.values[max(i - 1, 0):j].astype(np.float64)
    if ts.size < 4:
        return []
    dt, dv = np.diff(ts), np.diff(v)
    ok = dt > 0
    if not np.all(ok):
        ts, v = ts[np.concatenate(([True], ok))], v[np.concatenate(([True], ok))]
        dt, dv = np.diff(ts), np.diff(v)
    med_dt = float(np.median(dt))
    rate = np.where(dv > 0, dv, 0.0) / dt
    prev, nxt = np.roll(rate, 1), np.roll(rate, -1)
    inner = np.zeros(rate.shape, bool)
    inner[1:-1] = True
    ahead = inner & (dt > 5 * med_dt) & (rate < 0.2 * np.minimum(prev, nxt)) & (prev > 0) & (nxt > 0)
    back = inner & (rate > 5 * np.maximum(prev, nxt)) & (prev > 0) & (nxt > 0)
    out = [(float(ts[k + 1]), float(dt[k] - med_dt)) for k in np.nonzero(ahead)[0]]
    out += [(float(ts[k + 1]), -float(dv[k] / ((prev[k] + nxt[k]) / 2) - dt[k])) for k in np.nonzero(back)[0]]
    return sorted(out)


def summarise(flags: list[Flag]) -> dict[str, Any]:
    """``ok`` is false when a flag concerns the KPIs' inputs; every flag is listed."""
    return {"ok": all(f.get("kpi_input") is False for f in flags), "flags": flags}
