"""The expected-power model beyond its training range, and artifacts from before ``linear_base``."""

from __future__ import annotations

import pickle

import numpy as np

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
    old = ExpectedPowerDetector.__new__(ExpectedPowerDetector)
    old.__setstate__(state)
    again = pickle.loads(pickle.dumps(old))
    assert again.params()["linear_base"] is False
    X = training()[:100]
    assert np.array_equal(again.score(X), det.score(X))
