"""Trailing features and the online AnomalyModel: chunking never changes results."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.features import MultiScaleMeans, TrailingMean
from analytics.scoring import AnomalyModel, ModelSpec
from tests.analytics.conftest import normal_rows


def test_trailing_mean_matches_pandas_and_is_chunk_invariant() -> None:
    X = np.random.default_rng(0).normal(size=(257, 3))
    whole = TrailingMean(10).transform(X)
    import pandas as pd

    expected = pd.DataFrame(X).rolling(10, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(whole, expected, atol=1e-12)
    tm = TrailingMean(10)
    parts = np.vstack([tm.transform(X[a:b]) for a, b in [(0, 1), (1, 5), (5, 5), (5, 100), (100, 257)]])
    np.testing.assert_allclose(parts, whole, atol=1e-12)


def test_reset_restarts_the_window() -> None:
    tm = TrailingMean(3)
    tm.transform(np.array([[100.0], [100.0]]))
    tm.reset()
    np.testing.assert_allclose(tm.transform(np.array([[1.0], [3.0]]))[:, 0], [1.0, 2.0])


def test_multiscale_names() -> None:
    assert MultiScaleMeans([5, 60]).names(["a", "b"]) == ["a@mean5", "b@mean5", "a@mean60", "b@mean60"]
    with pytest.raises(ValueError):
        TrailingMean(0)


def test_stream_scorer_is_chunk_invariant_and_flags_a_shift() -> None:
    X = normal_rows(1000, 3)
    X[700:, 1] += 10
    model = AnomalyModel(spec=ModelSpec()).fit(X[:400], columns=["a", "b", "c"])
    whole = model.stream().push(X)
    s = model.stream()
    chunks = [s.push(X[a:b]) for a, b in [(0, 13), (13, 400), (400, 401), (401, 1000)]]
    np.testing.assert_allclose(np.concatenate([c.score for c in chunks]), whole.score, atol=1e-12)
    assert (np.concatenate([c.flag for c in chunks]) == whole.flag).all()
    assert ((whole.score >= 0) & (whole.score < 1)).all()
    assert whole.flag[720:].mean() > 0.95
    assert whole.flag[400:700].mean() < 0.05
    assert model.feature_names() == ["a@mean5", "b@mean5", "c@mean5"]


def test_push_with_resets_equals_manual_resets() -> None:
    X = normal_rows(600, 3)
    model = AnomalyModel(spec=ModelSpec(diff_windows=[20])).fit(X[:300])
    resets = np.zeros(600, dtype=bool)
    resets[[0, 250, 251, 400]] = True
    got = model.stream().push(X, resets=resets, with_contributions=True)
    s = model.stream()
    manual = []
    for a, b in [(0, 250), (250, 251), (251, 400), (400, 600)]:
        s.reset()
        manual.append(s.push(X[a:b]).score)
    np.testing.assert_allclose(got.score, np.concatenate(manual), atol=1e-12)
    assert got.contributions is not None and got.contributions.shape == (600, 6)
    assert model.feature_names()[3:] == ["x0@absdiff20", "x1@absdiff20", "x2@absdiff20"]


def test_absdiff_feature_catches_a_frozen_signal() -> None:
    X = normal_rows(2500, 3)
    X[2200:, 1] = X[2200, 1]  # stuck sensor: same level, no movement
    spec = ModelSpec(detector_params={"aggregate": "max", "use_std": False, "tail_quantile": 0.999},
                     diff_windows=[60])
    out = AnomalyModel(spec=spec).fit(X[:2000]).stream().push(X, with_contributions=True)
    assert out.flag[2260:].all() and out.flag[2000:2200].mean() < 0.05
    assert out.contributions is not None and out.contributions[2300:].argmax(axis=1).tolist() == [4] * 200


def test_fit_with_resets_sees_what_scoring_sees() -> None:
    """Running periods concatenated for training: a level step between two of them (a tool
    change while stopped) must not reach a difference window, as it does not when scoring."""
    from analytics.scoring import piece_starts

    rng = np.random.default_rng(5)
    running = np.ones(2000, dtype=bool)
    running[900:1000] = False  # a stop; the level restarts lower after it, like a new tool
    level = np.where(np.arange(2000) < 950, 40.0, 2.0)
    X = np.c_[level + rng.normal(0, 0.1, 2000), rng.normal(5, 0.1, 2000)][running]
    spec = ModelSpec(windows=[5], diff_windows=[60], vote_window=1)
    starts = piece_starts(running)
    assert starts.tolist().count(True) == 2 and starts[0] and starts[900]
    plain = AnomalyModel(spec=spec).fit(X, columns=["wear", "other"])
    pieces = AnomalyModel(spec=spec).fit(X, columns=["wear", "other"], resets=starts)
    k = plain.feature_names().index("wear@absdiff60")
    p_scale, q_scale = plain.detector.scale_, pieces.detector.scale_  # type: ignore[union-attr]
    assert q_scale[k] < p_scale[k] / 5  # the 38-unit step no longer sets its normal range
    assert pieces.threshold < plain.threshold
    # one piece is the same as no resets at all
    one = np.zeros(len(X), dtype=bool)
    one[0] = True
    assert AnomalyModel(spec=spec).fit(X, resets=one).threshold == AnomalyModel(spec=spec).fit(X).threshold
    with pytest.raises(ValueError, match="resets"):
        AnomalyModel(spec=spec).fit(X, resets=one[:10])
