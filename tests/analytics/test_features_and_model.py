"""Trailing features and the online AnomalyModel: chunking never changes results."""

from __future__ import annotations

from typing import Any

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


def test_median_settling_scores_every_row_and_is_chunk_invariant() -> None:
    """``settle="median"``: no blind rows after a restart — a filling window reads as its
    training median — and the result does not depend on how the rows are chunked."""
    X = normal_rows(1500, 3)
    X[1000:, 0] += 60  # a level shift the 5-row means see at once
    spec = ModelSpec(diff_windows=[300], vote_window=1, settle="median")
    model = AnomalyModel(spec=spec).fit(X[:800])
    assert model.settle_rows == 0 and model.medians is not None and model.medians.shape == (6,)
    resets = np.zeros(1500, dtype=bool)
    resets[[0, 1000]] = True  # restart right at the shift: the 300-row window starts filling
    whole = model.stream().push(X, resets=resets)
    assert not whole.raw[1000:1005].any()  # every window is filling: all features read as medians
    assert whole.flag[1005:1300].all()  # seen while the long window fills ("blank" would wait 300 rows)
    blank = AnomalyModel(spec=spec.model_copy(update={"settle": "blank"})).fit(X[:800])
    assert not blank.stream().push(X, resets=resets).flag[1000:1300].any()
    s = model.stream()
    parts = [s.push(X[a:b], resets=resets[a:b]) for a, b in [(0, 7), (7, 299), (299, 1003), (1003, 1500)]]
    np.testing.assert_allclose(np.concatenate([p.raw for p in parts]), whole.raw, atol=1e-12)


def test_median_settling_fits_on_what_scoring_sees() -> None:
    """In fitting, a filling window's rows read as the median too (none are dropped), and the
    median is that of the rows whose window was full."""
    X = normal_rows(1000, 2)
    spec = ModelSpec(windows=[5], diff_windows=[100], settle="median")
    model = AnomalyModel(spec=spec).fit(X)
    full = MultiScaleMeans([5], [100]).transform(X)
    np.testing.assert_allclose(model.medians[2:], np.median(full[100:, 2:], axis=0))  # type: ignore[index]
    np.testing.assert_allclose(model.medians[:2], np.median(full[5:, :2], axis=0))  # type: ignore[index]
    assert model.n_train == 1000


def test_an_artifact_from_before_the_settle_field_loads_as_blank() -> None:
    import pickle

    model = AnomalyModel(spec=ModelSpec(diff_windows=[20])).fit(normal_rows(300, 2))
    state = model.spec.__getstate__()
    del state["__dict__"]["settle"]  # what a spec pickled before the field existed holds
    old = ModelSpec.__new__(ModelSpec)
    old.__setstate__(state)
    assert old.settle == "blank" and old == model.spec
    assert pickle.loads(pickle.dumps(model)).spec.settle == "blank"


@pytest.mark.parametrize("spec", [
    {"settle": "median", "windows": [5], "diff_windows": [60, 300], "vote_window": 15, "vote_fraction": 0.5},
    {"settle": "blank", "windows": [5], "diff_windows": [20], "vote_window": 15, "vote_fraction": 0.5},
    {"settle": "median", "windows": [1], "diff_windows": [], "vote_window": 1, "vote_fraction": 1.0},
    {"settle": "median", "windows": [10], "diff_windows": [30], "vote_window": 9, "vote_fraction": 0.7},
])
def test_warmup_rows_is_where_the_first_flag_can_come_after_a_restart(spec: dict[str, Any]) -> None:
    """``warmup_rows``: rows after a (re)start whose flag is false whatever the data — rows far
    out from the first one on are flagged exactly from there, after a start as after a reset."""
    rng = np.random.default_rng(1)
    X = np.c_[rng.normal(0, 1, 3000), rng.normal(5, 1, 3000)]
    model = AnomalyModel(spec=ModelSpec(detector="robust_z", **spec)).fit(X)
    far = X[:200] + 100.0
    rows = np.r_[X[:50], far]
    chunk = model.stream().push(rows, resets=np.r_[np.zeros(50, bool), True, np.zeros(199, bool)])
    assert chunk.warming is not None
    for start in (0, 50):  # the stream's start, and a reset onto far-out rows
        if start == 50:
            assert int(np.argmax(chunk.flag[50:])) == model.warmup_rows
        assert chunk.warming[start:start + model.warmup_rows].all()
        assert not chunk.warming[start + model.warmup_rows]
    assert not chunk.flag[50:50 + model.warmup_rows].any()


def test_a_model_fitted_on_constant_rows_floors_its_threshold_and_survives_a_round_trip() -> None:
    """Every training score 0 (a quantized signal constant through the training window): the
    threshold was 1e-12, so the live scorer flagged a 0.002 % change. It is now one column moving
    by its scale floor (0.3 % of its level), the artifact says so, and a pickled model keeps it."""
    import pickle

    train = np.tile([50.0, 2.0], (400, 1))
    model = AnomalyModel(spec=ModelSpec()).fit(train, columns=["p", "q"])
    assert model.threshold_floored and model.detector is not None
    one_floor = float(model.detector.score(np.array([[50.0 + 0.003 * 50.0, 2.0]]))[0])  # p moves 0.15
    assert model.threshold == pytest.approx(one_floor) and one_floor > 0.5
    for step, flagged in ((0.001, False), (0.5, True)):
        later = np.vstack([train, np.tile([50.0 + step, 2.0], (300, 1))])
        got = model.stream().push(later)
        assert got.flag[420:].all() == flagged and not got.flag[:400].any()
    assert pickle.loads(pickle.dumps(model)).threshold == model.threshold
    noisy = AnomalyModel(spec=ModelSpec()).fit(normal_rows(400, 2))
    assert not noisy.threshold_floored and noisy.threshold > 1e-3


def test_an_artifact_from_before_the_floored_threshold_loads_unfloored() -> None:
    import pickle

    model = AnomalyModel(spec=ModelSpec()).fit(normal_rows(300, 2))
    del model.__dict__["threshold_floored"]  # what a model pickled before the field existed holds
    assert pickle.loads(pickle.dumps(model)).threshold_floored is False
