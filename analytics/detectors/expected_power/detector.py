"""Expected-power model: power predicted from the machine's context; the residual is the score.

``X``'s column ``target_index`` (default: the last) is the measured power; the other columns are
the context it should depend on (state one-hot, load / cycle rate, product one-hot, ambient...).
Fit: a gradient-boosted regression of power on the context, and the residuals' robust spread on
the training rows. Score: ``max(power − expected, 0) / spread`` (``two_sided=False``, default:
only *excess* power is waste — a compressed-air leak, a dragging bearing) or ``|residual|/spread``.
Contributions: the whole score is attributed to the power column (the context is not anomalous,
the power given that context is).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from analytics.detectors.base import FloatArray, as_matrix, shares


class ExpectedPowerDetector:
    """See module docstring."""

    name: ClassVar[str] = "expected_power"

    def __init__(self, target_index: int = -1, two_sided: bool = False, max_iter: int = 100,
                 min_spread: float = 1e-3) -> None:
        self.target_index = target_index
        self.two_sided = two_sided
        self.max_iter = max_iter
        self.min_spread = min_spread
        self._model: Any = None
        self._spread = 1.0
        self._d = 0

    def params(self) -> dict[str, Any]:
        return {"target_index": self.target_index, "two_sided": self.two_sided, "max_iter": self.max_iter,
                "min_spread": self.min_spread}

    def _split(self, arr: FloatArray) -> tuple[FloatArray, FloatArray]:
        t = self.target_index % arr.shape[1]
        ctx = np.delete(arr, t, axis=1)
        if ctx.shape[1] == 0:
            ctx = np.zeros((len(arr), 1))
        return ctx, arr[:, t]

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        ctx, y = self._split(arr)
        self._model = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=0).fit(ctx, y)
        resid = y - self._model.predict(ctx)
        q75, q25 = np.quantile(resid, [0.75, 0.25])
        self._spread = max(float((q75 - q25) / 1.349), float(resid.std()), self.min_spread)
        self._d = arr.shape[1]
        return self

    def residual(self, X: FloatArray) -> FloatArray:
        """Measured minus expected power (units of the power column)."""
        if self._model is None:
            raise RuntimeError("ExpectedPowerDetector: call fit() before score()")
        arr = as_matrix(X, self._d, where="score X")
        ctx, y = self._split(arr)
        out: FloatArray = y - self._model.predict(ctx)
        return out

    def score(self, X: FloatArray) -> FloatArray:
        r = self.residual(X) / self._spread
        out: FloatArray = np.abs(r) if self.two_sided else np.maximum(r, 0.0)
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        s = self.score(X)
        parts = np.zeros((len(s), self._d))
        parts[:, self.target_index % self._d] = s
        return shares(parts)
