"""Scrap model: learns which deviations make scrap; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from analytics.detectors.quality import ScrapModel
from analytics.errors import DataError


def cycles(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.c_[230 + rng.normal(0, 3, n), 600 + rng.normal(0, 20, n), rng.normal(0, 1, n)]
    return X, (rng.random(n) < oracle(X)).astype(int)


def oracle(X: np.ndarray) -> np.ndarray:
    logit = -7 + 1.0 * np.abs(X[:, 0] - 230) + 0.05 * np.abs(X[:, 1] - 600)
    return np.asarray(1 / (1 + np.exp(-logit)))


def test_scrap_probability_on_a_held_out_shift() -> None:
    X, y = cycles(2000, 0)
    Xt, yt = cycles(1000, 1)
    m = ScrapModel().fit(X, y)
    p = m.scrap_probability(Xt)
    assert ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(yt, p) >= 0.85
    assert roc_auc_score(yt, p) >= roc_auc_score(yt, oracle(Xt)) - 0.05  # close to the true model
    c = m.coefficients()
    assert c[0] > c[2] and c[1] > c[2]  # temperature and pressure drive scrap, the noise column not


def test_errors() -> None:
    X, _ = cycles(50, 0)
    with pytest.raises(DataError, match="both good"):
        ScrapModel().fit(X, np.zeros(50))
    with pytest.raises(DataError, match="labels for"):
        ScrapModel().fit(X, np.zeros(10))
