"""Scrap probability per cycle, learned from process signals and the good/scrap counters.

Supervised, so it is not a :class:`~analytics.detectors.base.Detector`: ``fit(X, y)`` with one
row per completed cycle (the process signals the part was made under) and ``y`` = 1 for a
scrapped part; ``scrap_probability(X)`` in [0, 1].

Model: logistic regression on the standardised *absolute deviations* of the signals from their
training medians (the process window: scrap grows with the distance from the set-point in either
direction — too hot or too cold). Deviations only, no level terms: with level terms a shift
whose scrap happened to fall on one side of the set-point learns a slope that, beyond the
training range (an overheating machine), points the wrong way; deviations extrapolate
monotonically. Not class-balanced, so a probability keeps its machine's own scrap rate and the
probabilities of machines with different rates are comparable (pooled across machines, the
class-balanced variant ranked a rarely-scrapping assembly station's cycles as risky as a moulding
machine's). Few parameters, so it learns from the few dozen scrap parts of a day;
``coefficients`` name the signals that drive scrap.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from analytics.detectors.base import FloatArray, as_matrix
from analytics.errors import DataError


class ScrapModel:
    """See module docstring. ``C``: inverse L2 regularisation strength."""

    name = "scrap"

    def __init__(self, C: float = 1.0) -> None:
        self.C = C
        self._model: Any = None
        self._scaler: Any = None
        self._median: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {"C": self.C}

    def _features(self, arr: FloatArray) -> FloatArray:
        assert self._median is not None
        out: FloatArray = np.abs(arr - self._median)
        return out

    def fit(self, X: FloatArray, y: NDArray[Any]) -> Self:
        arr = as_matrix(X, where="fit X")
        labels = np.asarray(y).astype(int).ravel()
        if len(labels) != len(arr):
            raise DataError("fit y", f"{len(labels)} labels for {len(arr)} rows")
        if set(np.unique(labels)) != {0, 1}:
            raise DataError("fit y", "needs both good (0) and scrap (1) cycles to learn from")
        self._median = np.median(arr, axis=0)
        F = self._features(arr)
        self._scaler = StandardScaler().fit(F)
        self._model = LogisticRegression(C=self.C, max_iter=1000).fit(self._scaler.transform(F), labels)
        return self

    def scrap_probability(self, X: FloatArray) -> FloatArray:
        if self._model is None or self._median is None:
            raise RuntimeError("ScrapModel: call fit() before scrap_probability()")
        arr = as_matrix(X, len(self._median), where="X")
        out: FloatArray = self._model.predict_proba(self._scaler.transform(self._features(arr)))[:, 1]
        return out

    def coefficients(self) -> FloatArray:
        """Per input column: |coefficient| of its (standardised) deviation term."""
        if self._model is None or self._median is None:
            raise RuntimeError("ScrapModel: call fit() first")
        out: FloatArray = np.abs(self._model.coef_[0])
        return out
