"""IsolationForest behind the ``Detector`` seam (scikit-learn's sign flipped: higher = more anomalous).

Score: ``-score_samples(X) - offset`` where ``offset`` is the minimum over the training rows,
so scores are >= 0 on training data (and clipped at 0 elsewhere). IsolationForest has no
per-feature attribution; contributions are the robust z² shares of the row (which signals are
furthest from their training median), documented as an approximation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from sklearn.ensemble import IsolationForest

from analytics.detectors.base import FloatArray, as_matrix, robust_center_scale, shares


class IsolationForestDetector:
    """See module docstring. Deterministic for a given ``random_state``."""

    name: ClassVar[str] = "isolation_forest"

    def __init__(self, n_estimators: int = 100, max_samples: int | str = "auto", random_state: int = 0,
                 rel_floor: float = 0.003) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.rel_floor = rel_floor
        self._model: Any = None
        self._offset = 0.0
        self._center: FloatArray | None = None
        self._scale: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {"n_estimators": self.n_estimators, "max_samples": self.max_samples,
                "random_state": self.random_state, "rel_floor": self.rel_floor}

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        self._model = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                      random_state=self.random_state).fit(arr)
        self._offset = float(np.min(-self._model.score_samples(arr)))
        self._center, self._scale = robust_center_scale(arr, self.rel_floor)
        return self

    def _checked(self, X: FloatArray) -> FloatArray:
        if self._model is None or self._center is None:
            raise RuntimeError("IsolationForestDetector: call fit() before score()")
        return as_matrix(X, len(self._center), where="score X")

    def score(self, X: FloatArray) -> FloatArray:
        arr = self._checked(X)
        out: FloatArray = np.maximum(-self._model.score_samples(arr) - self._offset, 0.0)
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        arr = self._checked(X)
        if self._center is None or self._scale is None:
            raise RuntimeError("IsolationForestDetector: call fit() before contributions()")
        z = (arr - self._center) / self._scale
        return shares(z * z)
