"""Regression-residual (MSET-style) detector: each signal predicted from all the others.

Fit: robust scaling, then one ridge regression per column on the other columns, and the
residuals' standard deviation on the training rows. Score of a row: RMS of standardised
residuals; contributions: each column's squared standardised residual share. It catches a
broken relationship (pressure up while flow and current stay) that per-signal limits miss.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from analytics.detectors.base import FloatArray, as_matrix, robust_center_scale, shares


class ResidualDetector:
    """See module docstring. ``alpha``: ridge penalty on the scaled signals."""

    name: ClassVar[str] = "residual"

    def __init__(self, alpha: float = 1.0, rel_floor: float = 0.003) -> None:
        self.alpha = alpha
        self.rel_floor = rel_floor
        self._w: FloatArray | None = None
        self._state: dict[str, FloatArray] = {}

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "rel_floor": self.rel_floor}

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        center, scale = robust_center_scale(arr, self.rel_floor)
        Z = (arr - center) / scale
        d = Z.shape[1]
        W = np.zeros((d + 1, d))
        A = np.hstack([Z, np.ones((len(Z), 1))])
        for j in range(d):
            cols = [i for i in range(d + 1) if i != j]
            Aj = A[:, cols]
            reg = self.alpha * np.eye(len(cols))
            reg[-1, -1] = 0.0
            coef = np.linalg.solve(Aj.T @ Aj + reg, Aj.T @ Z[:, j])
            W[cols, j] = coef
        self._w = W
        self._state = {"center": center, "scale": scale}
        resid = Z - A @ W
        self._state["rsd"] = np.maximum(resid.std(axis=0), 1e-3)
        return self

    def _resid(self, X: FloatArray) -> FloatArray:
        if self._w is None:
            raise RuntimeError("ResidualDetector: call fit() before score()")
        s = self._state
        arr = as_matrix(X, len(s["center"]), where="score X")
        Z = (arr - s["center"]) / s["scale"]
        A = np.hstack([Z, np.ones((len(Z), 1))])
        r: FloatArray = (Z - A @ self._w) / s["rsd"]
        return r

    def score(self, X: FloatArray) -> FloatArray:
        r = self._resid(X)
        out: FloatArray = np.sqrt(np.mean(r * r, axis=1))
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        r = self._resid(X)
        return shares(r * r)
