"""The expected-power model beyond its training range (bounded extrapolation), and artifacts from
before ``linear_base`` and ``extrapolation_margin``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from analytics.detectors.expected_power import ExpectedPowerDetector


def rows(load: np.ndarray, running: np.ndarray, seed: int) -> np.ndarray:
    """(running, idle, load, power): power = 30 kW + 3 kW per unit of load while running, 8 kW idle."""
    noise = np.random.default_rng(seed).normal(0.0, 0.1, len(load))
    power = np.where(running == 1, 30.0 + 3.0 * load, 8.0) + noise
    out: np.ndarray = np.c_[running, 1 - running, load, power]
    return out


def training() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rows(rng.uniform(8.0, 11.0, 5_000), (rng.random(5_000) < 0.8).astype(float), 1)


def test_a_load_above_the_training_range_is_not_read_as_waste() -> None:
    above = rows(np.linspace(11.2, 12.0, 50), np.ones(50), 2)  # normal power for a higher load
    trees = ExpectedPowerDetector(linear_base=False).fit(training())
    linear = ExpectedPowerDetector().fit(training())  # the default
    assert np.median(trees.score(above)) > 5.0  # trees: flat beyond 11, +0.6..2.4 kW "excess"
    assert np.median(linear.score(above)) < 1.5
    assert np.abs(linear.residual(above)).max() < 0.5


def test_linear_base_still_sees_excess_power_inside_and_outside_the_range() -> None:
    det = ExpectedPowerDetector().fit(training())
    inside, outside = rows(np.full(50, 9.5), np.ones(50), 3), rows(np.full(50, 11.8), np.ones(50), 4)
    for X in (inside, outside):
        leak = X.copy()
        leak[:, 3] *= 1.1  # +10 % power: a compressed-air leak
        assert det.score(leak).min() > 5.0 * max(det.score(X).max(), 1.0)
    idle = rows(np.full(50, 9.5), np.zeros(50), 5)
    assert np.abs(det.residual(idle)).max() < 0.5


def test_an_artifact_pickled_before_linear_base_loads_as_trees_only() -> None:
    det = ExpectedPowerDetector(linear_base=False).fit(training())
    state = dict(det.__dict__)
    del state["linear_base"], state["_base"]  # the attributes an older artifact lacks
    del state["extrapolation_margin"], state["_bounds"]
    old = ExpectedPowerDetector.__new__(ExpectedPowerDetector)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    assert again.params()["linear_base"] is False and again.params()["extrapolation_margin"] is None
    X = training()[:100]
    assert np.array_equal(again.score(X), det.score(X))


def moulding(melt: np.ndarray, state: np.ndarray, seed: int) -> np.ndarray:
    """(running, down, off, melt temperature, power): 30 kW running, 4 kW down with a tilt of
    0.005 kW/°C (within the noise) over the 222-232 °C the reference ever saw it down at, 0.8 kW off."""
    noise = np.random.default_rng(seed).normal(0.0, 0.05, len(melt))
    down = 4.0 + 0.005 * (melt - 227.0)
    power = np.select([state == 0, state == 1], [30.0 + 0.01 * melt, down], 0.8) + noise
    out: np.ndarray = np.c_[state == 0, state == 1, state == 2, melt, power].astype(float)
    return out


def moulding_training() -> np.ndarray:
    rng = np.random.default_rng(6)
    state = rng.choice(3, 6_000, p=[0.6, 0.1, 0.3])
    melt = np.where(state == 2, rng.uniform(55.0, 160.0, 6_000), rng.uniform(222.0, 232.0, 6_000))
    out = moulding(melt, state, 7)
    out[::40, :3] = 0.2 + 0.6 * out[::40, :3]  # window means across a transition: fractional states
    return out


def test_the_margin_bounds_a_narrow_slope_carried_far_beyond_its_range() -> None:
    """Down straight from a break, melt still cold: the power of down, not waste."""
    cold_down = moulding(np.linspace(62.0, 200.0, 50), np.ones(50), 8)
    cold_down[:, 4] = 4.0  # what down draws, whatever the melt
    unbounded = ExpectedPowerDetector(extrapolation_margin=None).fit(moulding_training())
    bounded = ExpectedPowerDetector(extrapolation_margin=0.5).fit(moulding_training())
    assert np.median(unbounded.score(cold_down)) > 5.0  # 0.005 kW/°C carried 160 °C: "excess"
    # held at 217 °C (222 − 0.5 × 10): the tilt over 5 °C, about one spread
    assert bounded.score(cold_down).max() < 2.5 and np.median(bounded.score(cold_down)) < 1.5
    leak = cold_down.copy()
    leak[:, 4] += 1.0  # a kilowatt of real waste while down is still seen
    assert bounded.score(leak).min() > 5.0
    inside = moulding(np.full(50, 227.0), np.ones(50), 9)
    np.testing.assert_allclose(bounded.score(inside), unbounded.score(inside), atol=0.2)
    default = ExpectedPowerDetector().fit(moulding_training())  # margin 1.0: held at 212 °C
    assert default.params()["extrapolation_margin"] == 1.0
    assert np.median(default.score(cold_down)) < 2.0


def test_the_margin_keeps_a_load_just_above_the_range_extrapolated() -> None:
    above = rows(np.linspace(11.2, 12.0, 50), np.ones(50), 2)  # range 8-11: 12 is within 0.5 × 3
    det = ExpectedPowerDetector(extrapolation_margin=0.5).fit(training())
    assert np.median(det.score(above)) < 1.5
    far = rows(np.full(50, 20.0), np.ones(50), 3)  # 9 beyond an 3-wide range: held at 12.5
    assert np.median(det.score(far)) > 5.0
    assert det.params()["extrapolation_margin"] == 0.5
    with pytest.raises(ValueError, match="extrapolation_margin"):
        ExpectedPowerDetector(extrapolation_margin=-1.0)
