"""One contract suite run against every ``Detector`` (see analytics/detectors/base.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

from analytics.detectors import DETECTORS, Detector, make_detector, top_contributors
from analytics.detectors.context import ContextDetector
from analytics.errors import DataError
from tests.analytics.conftest import normal_rows

FACTORIES: dict[str, Callable[[], Detector]] = {name: partial(make_detector, name) for name in DETECTORS}
FACTORIES["context"] = lambda: ContextDetector(lambda: make_detector("robust_z"), context_index=0)
FACTORIES["expected_power+trees"] = partial(make_detector, "expected_power", linear_base=False)
FACTORIES["expected_power+unbounded"] = partial(make_detector, "expected_power", extrapolation_margin=None)


def data(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(training rows, test rows whose second half is anomalous, index of the anomalous column)."""
    X = normal_rows(800, 4)
    train, test = X[:500], X[500:].copy()
    col = 3 if name.startswith("expected_power") else 2
    if name.startswith("expected_power"):  # power column (last) = f(load) with noise; anomaly = excess power
        rng = np.random.default_rng(1)
        for M in (train, test):
            M[:, 3] = 2.0 * M[:, 1] + rng.normal(0, 0.05, len(M))
    test[150:, col] += 8.0
    if name == "context":  # column 0 = context code (0 or 1); the detector is per context
        train[:, 0] = np.arange(len(train)) % 2
        test[:, 0] = np.arange(len(test)) % 2
    return train, test, col


@pytest.fixture(params=sorted(FACTORIES))
def case(request: pytest.FixtureRequest) -> tuple[str, Detector]:
    return request.param, FACTORIES[request.param]()


def test_is_a_detector(case: tuple[str, Detector]) -> None:
    name, det = case
    assert isinstance(det, Detector)
    assert det.name == name.split("+")[0]
    assert isinstance(det.params(), dict)


def test_fit_returns_self_and_scores_are_finite_nonnegative(case: tuple[str, Detector]) -> None:
    name, det = case
    train, test, _ = data(name)
    assert det.fit(train) is det
    s = det.score(test)
    assert s.shape == (len(test),)
    assert np.isfinite(s).all() and (s >= 0).all()


def test_higher_score_means_more_anomalous(case: tuple[str, Detector]) -> None:
    name, det = case
    train, test, _ = data(name)
    s = det.fit(train).score(test)
    assert np.median(s[150:]) > 2 * np.median(s[:150]) + 1e-9
    assert np.quantile(s[150:], 0.1) > np.quantile(s[:150], 0.9)


def test_scoring_is_row_wise(case: tuple[str, Detector]) -> None:
    """A row's score does not depend on the other rows scored with it (online by construction)."""
    name, det = case
    train, test, _ = data(name)
    det.fit(train)
    whole = det.score(test)
    parts = np.concatenate([det.score(test[:7]), det.score(test[7:100]), det.score(test[100:])])
    np.testing.assert_allclose(whole, parts, rtol=1e-9, atol=1e-12)


def test_contributions_are_shares_and_name_the_culprit(case: tuple[str, Detector]) -> None:
    name, det = case
    train, test, col = data(name)
    c = det.fit(train).contributions(test)
    assert c.shape == test.shape
    assert (c >= 0).all()
    sums = c.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | np.isclose(sums, 0.0))
    names = [f"s{i}" for i in range(test.shape[1])]
    top = top_contributors(names, c[200:].mean(axis=0), k=1)
    assert top[0][0] == f"s{col}"


def test_wrong_shape_and_nan_are_clear_errors(case: tuple[str, Detector]) -> None:
    name, det = case
    train, test, _ = data(name)
    det.fit(train)
    with pytest.raises(DataError, match="columns"):
        det.score(test[:, :2])
    bad = test.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="row 3, column 1"):
        det.score(bad)


def test_score_before_fit_raises(case: tuple[str, Detector]) -> None:
    name, det = case
    _, test, _ = data(name)
    with pytest.raises((RuntimeError, DataError)):
        det.score(test)


def test_unknown_detector_names_the_choices() -> None:
    with pytest.raises(ValueError, match="robust_z"):
        make_detector("nope")


def test_context_detector_scores_only_known_contexts() -> None:
    train, test, _ = data("context")
    det = ContextDetector(lambda: make_detector("robust_z"), context_index=0, contexts=[1]).fit(train)
    s = det.score(test)
    mask = det.scored_mask(test)
    assert (s[~mask] == 0).all() and (s[mask] > 0).any()
    assert (det.contributions(test)[:, 0] == 0).all()


def test_robust_z_drift_widens_only_what_moved_during_training() -> None:
    from analytics.detectors.robust_z import RobustZDetector

    rng = np.random.default_rng(3)
    n = 400
    steady = rng.normal(10.0, 0.1, n)
    warming = 20.0 + 8.0 * (1.0 - np.exp(-np.arange(n) / 300.0)) + rng.normal(0.0, 0.1, n)
    train = np.column_stack([steady, warming])
    plain = RobustZDetector(rel_floor=0.0).fit(train)
    wide = RobustZDetector(rel_floor=0.0, drift=1.0).fit(train)
    assert plain.scale_ is not None and wide.scale_ is not None
    assert wide.scale_[0] == pytest.approx(plain.scale_[0], rel=0.1)  # stationary: about the same
    assert wide.scale_[1] > 1.5 * plain.scale_[1]  # moved ~4.5 in training: much wider
    # the next 700 rows of the same warm-up score lower, a jump in the steady column as high as before
    later = np.column_stack([np.full(5, 10.0), np.full(5, 20.0 + 8.0 * (1 - np.exp(-1000 / 300.0)))])
    assert (wide.score(later) < plain.score(later)).all()
    jump = np.array([[11.0, float(np.median(warming))]])
    assert wide.score(jump)[0] == pytest.approx(plain.score(jump)[0], rel=0.15)
    assert RobustZDetector(drift=0.0).fit(train).params()["drift"] == 0.0
    with pytest.raises(ValueError, match="drift"):
        RobustZDetector(drift=-1.0)
