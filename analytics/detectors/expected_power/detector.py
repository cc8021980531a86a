"""Expected-power model: power predicted from the machine's context; the residual is the score.

``X``'s column ``target_index`` (default: the last) is the measured power; the other columns are
the context it should depend on (state one-hot, load / cycle rate, product one-hot, ambient...).
Fit: a gradient-boosted regression of power on the context, and the residuals' robust spread on
the training rows. With ``linear_base=True`` (the default since session 8; chosen on the simulated
line, analytics/README.md) a least-squares linear model of power on the context
and the pairwise products of its columns (e.g. state one-hot × load) is fitted first and the trees
learn only its residual: trees predict a constant beyond the highest (or lowest) context they were
trained on, so a load above the reference's range would read as excess power; the linear part
extrapolates. Score: ``max(power − expected, 0) / spread`` (``two_sided=False``, default:
only *excess* power is waste — a compressed-air leak, a dragging bearing) or ``|residual|/spread``.
Contributions: the whole score is attributed to the power column (the context is not anomalous,
the power given that context is).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from analytics.detectors.base import FloatArray, as_matrix, shares


class ExpectedPowerDetector:
    """See module docstring."""

    name: ClassVar[str] = "expected_power"

    def __init__(self, target_index: int = -1, two_sided: bool = False, max_iter: int = 100,
                 min_spread: float = 1e-3, linear_base: bool = True) -> None:
        self.target_index = target_index
        self.two_sided = two_sided
        self.max_iter = max_iter
        self.min_spread = min_spread
        self.linear_base = linear_base
        self._base: Any = None
        self._model: Any = None
        self._spread = 1.0
        self._d = 0

    def params(self) -> dict[str, Any]:
        return {"target_index": self.target_index, "two_sided": self.two_sided, "max_iter": self.max_iter,
                "min_spread": self.min_spread, "linear_base": self.linear_base}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # artifacts pickled before ``linear_base`` existed: trees only
        state.setdefault("linear_base", False)
        state.setdefault("_base", None)
        self.__dict__.update(state)

    def _split(self, arr: FloatArray) -> tuple[FloatArray, FloatArray]:
        t = self.target_index % arr.shape[1]
        ctx = np.delete(arr, t, axis=1)
        if ctx.shape[1] == 0:
            ctx = np.zeros((len(arr), 1))
        return ctx, arr[:, t]

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        ctx, y = self._split(arr)
        self._base = None
        if self.linear_base:
            self._base = make_pipeline(PolynomialFeatures(2, interaction_only=True, include_bias=False),
                                       LinearRegression()).fit(ctx, y)
        base = self._linear(ctx)
        self._model = HistGradientBoostingRegressor(max_iter=self.max_iter, random_state=0).fit(ctx, y - base)
        resid = y - (base + self._model.predict(ctx))  # as _expected, with the linear part computed once
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
        out: FloatArray = y - self._expected(ctx)
        return out

    def _linear(self, ctx: FloatArray) -> FloatArray:
        out: FloatArray = np.zeros(len(ctx)) if self._base is None else self._base.predict(ctx)
        return out

    def _expected(self, ctx: FloatArray) -> FloatArray:
        out: FloatArray = self._linear(ctx) + self._model.predict(ctx)
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
