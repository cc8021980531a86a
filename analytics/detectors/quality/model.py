"""Scrap probability per cycle, learned from process signals and the good/scrap counters.

Supervised, so it is not a :class:`~analytics.detectors.base.Detector`: ``fit(X, y)`` with one
row per completed cycle (process-signal features over the cycle) and ``y`` = 1 for a scrapped
part; ``scrap_probability(X)`` in [0, 1]. A gradient-boosted classifier with balanced class
weights (scrap is rare); ``feature_importances`` say which signals drive scrap overall.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance

from analytics.detectors.base import FloatArray, as_matrix
from analytics.errors import DataError


class ScrapModel:
    """See module docstring."""

    name = "scrap"

    def __init__(self, max_iter: int = 200, learning_rate: float = 0.05) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self._model: Any = None
        self._d = 0

    def params(self) -> dict[str, Any]:
        return {"max_iter": self.max_iter, "learning_rate": self.learning_rate}

    def fit(self, X: FloatArray, y: NDArray[Any]) -> Self:
        arr = as_matrix(X, where="fit X")
        labels = np.asarray(y).astype(int).ravel()
        if len(labels) != len(arr):
            raise DataError("fit y", f"{len(labels)} labels for {len(arr)} rows")
        if set(np.unique(labels)) != {0, 1}:
            raise DataError("fit y", "needs both good (0) and scrap (1) cycles to learn from")
        self._model = HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                                     class_weight="balanced", random_state=0).fit(arr, labels)
        self._d = arr.shape[1]
        return self

    def scrap_probability(self, X: FloatArray) -> FloatArray:
        if self._model is None:
            raise RuntimeError("ScrapModel: call fit() before scrap_probability()")
        arr = as_matrix(X, self._d, where="X")
        out: FloatArray = self._model.predict_proba(arr)[:, 1]
        return out

    def feature_importances(self, X: FloatArray, y: NDArray[Any]) -> FloatArray:
        """Permutation importance (drop in ROC AUC) of each column on ``(X, y)``."""
        res = permutation_importance(self._model, as_matrix(X, self._d), np.asarray(y).astype(int),
                                     scoring="roc_auc", n_repeats=3, random_state=0)
        out: FloatArray = np.maximum(res.importances_mean, 0.0)
        return out
