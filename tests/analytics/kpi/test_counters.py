"""Counter unwrapping: resets, rollovers, out-of-order samples, jitter; clock-jump detection."""

from __future__ import annotations

import numpy as np

from analytics.kpi.counters import unwrap
from analytics.kpi.dataquality import clock_jumps
from analytics.kpi.series import Series


def _unwrap(values: list[float], **kw: float) -> tuple[list[float], list[float], list[float], list[float]]:
    r = unwrap(Series(np.arange(len(values), dtype=float), np.array(values, dtype=float)), **kw)
    return r.inc.tolist(), r.resets.tolist(), r.rollovers.tolist(), r.out_of_order.tolist()


def test_reset_to_zero_counts_the_new_value_never_negative() -> None:
    assert _unwrap([5, 6, 7, 0, 1, 2]) == ([0, 1, 1, 0, 1, 1], [3.0], [], [])
    assert _unwrap([5, 6, 7, 1, 2]) == ([0, 1, 1, 1, 1], [3.0], [], [])


def test_rollover_when_the_wrap_value_is_known() -> None:
    assert _unwrap([65530, 65535, 3, 5], rollover_at=65536) == ([0, 5, 4, 2], [], [2.0], [])


def test_out_of_order_samples_add_nothing_twice() -> None:
    # 9 then 7 (an older reading arriving late), 10, 8 (late again), 11: the total rise is 6.
    inc, resets, _, ooo = _unwrap([5, 6, 9, 7, 10, 8, 11])
    assert sum(inc) == 6 and resets == [] and ooo == [3.0, 5.0]


def test_float_jitter_is_not_a_reset() -> None:
    inc, resets, _, ooo = _unwrap([1.0, 1.5, 1.4999999, 2.0], tolerance=1e-6)
    assert abs(sum(inc) - 1.0) < 1e-12 and resets == [] and ooo == []


def test_clock_jumps_ahead_and_back_in_an_energy_counter() -> None:
    # 1 kWh per second; the clock jumps 90 s ahead at t=100 and back at t=300 (reported times).
    true_t = np.arange(0, 400, dtype=float)
    reported = np.where((true_t >= 100) & (true_t < 300), true_t + 90, true_t)
    keep = ~((true_t < 300) & (reported >= 300) & (reported < 390))  # InfluxDB: the later write wins
    ts, v = reported[keep], true_t[keep]
    order = np.argsort(ts, kind="stable")
    jumps = clock_jumps(Series(ts[order], v[order]), 0.0, 500.0)
    assert [(t, round(o)) for t, o in jumps] == [(190.0, 90), (300.0, -90)]
