"""Robust z-score detector: the root-mean-square of per-signal robust z-scores.

Fit: per-column median and robust scale (see :func:`robust_center_scale`). Score of a row:
``sqrt(mean_j z_j²)`` with ``z_j = (x_j − median_j) / scale_j``. Contributions: ``z_j² / Σ z²``.
Explainable and cheap (O(d) per row); with trailing-mean features it is the SKAB winner here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from analytics.detectors.base import FloatArray, as_matrix, robust_center_scale, shares


class RobustZDetector:
    """See module docstring. ``rel_floor``: scale floor as a fraction of |median| (default 0.003)."""

    name: ClassVar[str] = "robust_z"

    def __init__(self, rel_floor: float = 0.003) -> None:
        if rel_floor < 0:
            raise ValueError("rel_floor must be >= 0")
        self.rel_floor = rel_floor
        self.center_: FloatArray | None = None
        self.scale_: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {"rel_floor": self.rel_floor}

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        self.center_, self.scale_ = robust_center_scale(arr, self.rel_floor)
        return self

    def _z(self, X: FloatArray) -> FloatArray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustZDetector: call fit() before score()")
        arr = as_matrix(X, len(self.center_), where="score X")
        z: FloatArray = (arr - self.center_) / self.scale_
        return z

    def score(self, X: FloatArray) -> FloatArray:
        z = self._z(X)
        out: FloatArray = np.sqrt(np.mean(z * z, axis=1))
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        z = self._z(X)
        return shares(z * z)
