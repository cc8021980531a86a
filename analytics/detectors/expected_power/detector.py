"""Expected-power model: power predicted from the machine's context; the residual is the score.

``X``'s column ``target_index`` (default: the last) is the measured power; the other columns are
the context it should depend on (state one-hot, load / cycle rate, product one-hot, ambient...).
Fit: a gradient-boosted regression of power on the context, and the residuals' robust spread on
the training rows. With ``linear_base=True`` (the default since session 8; chosen on the simulated
line, analytics/README.md) a least-squares linear model of power on the context
and the pairwise products of its columns (e.g. state one-hot × load) is fitted first and the trees
learn only its residual: trees predict a constant beyond the highest (or lowest) context they were
trained on, so a load above the reference's range would read as excess power; the linear part
extrapolates. ``extrapolation_margin=m`` bounds how far: for the linear part only, each continuous
context column is clipped to [q0.001 − m·w, q0.999 + m·w] (w = q0.999 − q0.001) of the training rows
in the same *operating cell* — the same values of the 0/1 context columns (the state one-hot), or
all training rows for a cell with fewer than 30 of them — so a slope fitted over a narrow range
(melt temperature while down, over 10 °C) is not carried 160 °C beyond it (a cold restart after a
break). Default 1.0 (chosen in session 9 on the simulated line, analytics/README.md); ``None``:
unbounded. Score: ``max(power − expected, 0) / spread`` (``two_sided=False``, default:
only *excess* power is waste — a compressed-air leak, a dragging bearing) or ``|residual|/spread``.
Contributions: the whole score is attributed to the power column (the context is not anomalous,
the power given that context is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from analytics.detectors.base import FloatArray, as_matrix, shares


class ExpectedPowerDetector:
    """See module docstring."""

    name: ClassVar[str] = "expected_power"

    def __init__(self, target_index: int = -1, two_sided: bool = False, max_iter: int = 100,
                 min_spread: float = 1e-3, linear_base: bool = True, *,
                 extrapolation_margin: float | None = 1.0) -> None:
        if extrapolation_margin is not None and not extrapolation_margin >= 0:
            raise ValueError(f"extrapolation_margin must be >= 0 or None, not {extrapolation_margin!r}")
        self.target_index = target_index
        self.two_sided = two_sided
        self.max_iter = max_iter
        self.min_spread = min_spread
        self.linear_base = linear_base
        self.extrapolation_margin = extrapolation_margin
        self._bounds: _CellBounds | None = None
        self._base: Any = None
        self._model: Any = None
        self._spread = 1.0
        self._d = 0

    def params(self) -> dict[str, Any]:
        return {"target_index": self.target_index, "two_sided": self.two_sided, "max_iter": self.max_iter,
                "min_spread": self.min_spread, "linear_base": self.linear_base,
                "extrapolation_margin": self.extrapolation_margin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # artifacts pickled before ``linear_base`` existed: trees only
        state.setdefault("linear_base", False)
        state.setdefault("_base", None)
        state.setdefault("extrapolation_margin", None)  # and before the margin: unbounded
        state.setdefault("_bounds", None)
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
        self._bounds = None
        if self.linear_base and self.extrapolation_margin is not None:
            self._bounds = _CellBounds.fit(ctx, self.extrapolation_margin)
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
        if self._base is None:
            return np.zeros(len(ctx))
        out: FloatArray = self._base.predict(ctx if self._bounds is None else self._bounds.clip(ctx))
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


@dataclass(frozen=True)
class _CellBounds:
    """Per operating cell (which 0/1 context columns are above 0.5), the interval each continuous
    column is clipped to: [q0.001 − m·w, q0.999 + m·w] of the cell's training rows. Row ``k`` of
    ``lo``/``hi`` is cell ``codes[k]``'s; their last row (all training rows) serves other cells."""

    binary: NDArray[np.bool_]
    codes: NDArray[np.int64]
    lo: FloatArray
    hi: FloatArray

    MIN_ROWS: ClassVar[int] = 30
    MIN_EXACT: ClassVar[float] = 0.9
    """A column in [0, 1] is a 0/1 context column when this share of its training rows is exactly 0
    or 1 (a window mean of a one-hot state is fractional only across a transition)."""

    @staticmethod
    def _code(ctx: FloatArray, binary: NDArray[np.bool_]) -> NDArray[np.int64]:
        bits = (ctx[:, binary] > 0.5).astype(np.int64)
        out: NDArray[np.int64] = bits @ (np.int64(1) << np.arange(bits.shape[1], dtype=np.int64))
        return out

    @classmethod
    def fit(cls, ctx: FloatArray, margin: float) -> _CellBounds:
        # a one-hot column as the model sees it: its trailing mean, 0 or 1 except at transitions
        in_unit = ((ctx >= 0.0) & (ctx <= 1.0)).all(axis=0)
        binary: NDArray[np.bool_] = in_unit & (np.isin(ctx, (0.0, 1.0)).mean(axis=0) >= cls.MIN_EXACT)
        if int(binary.sum()) > 62:
            raise ValueError(f"expected_power: {int(binary.sum())} 0/1 context columns (at most 62)")
        code = cls._code(ctx, binary)
        codes, counts = np.unique(code, return_counts=True)
        codes = codes[counts >= cls.MIN_ROWS]
        lo, hi = [], []
        for rows in [*(ctx[code == c] for c in codes.tolist()), ctx]:
            q0, q1 = np.quantile(rows[:, ~binary], [0.001, 0.999], axis=0)
            lo.append(q0 - margin * (q1 - q0))
            hi.append(q1 + margin * (q1 - q0))
        return cls(binary, codes, np.array(lo), np.array(hi))

    def clip(self, ctx: FloatArray) -> FloatArray:
        out = ctx.copy()
        cont = ~self.binary
        if not cont.any():
            return out
        code = self._code(ctx, self.binary)
        k = np.searchsorted(self.codes, code)
        known = k < len(self.codes)
        known[known] = self.codes[k[known]] == code[known]
        k[~known] = len(self.codes)  # a cell training did not see (enough of): all rows' bounds
        out[:, cont] = np.clip(ctx[:, cont], self.lo[k], self.hi[k])
        return out
