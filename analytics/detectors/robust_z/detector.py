"""Robust z-score detector: per-signal robust z-scores, aggregated by RMS or max.

Fit: per-column median and robust scale (see :func:`robust_center_scale`; ``use_std=False``
leaves the standard deviation out, so start-up transients in the training rows do not inflate
the scale). With ``tail_quantile`` set, each column's z is further divided by that quantile of
its own training |z| — separately for deviations above and below the median, floored at 1 —
so every signal's "1.0" is the edge of its own normal range in that direction (a heavy upper
tail from transients does not mask a frozen sensor's drop).

With ``drift`` > 0, a column that moved *during* the training rows gets a wider scale:
``scale = hypot(scale, drift · |median(last quarter) − median(first quarter)|)`` of the training
rows (in time order). A short training window sees only part of a slow signal's course (a
temperature still warming up); the level it reached is not its normal range, and how far it
moved in training says how far it may move next. A stationary column moves by about its noise
over √(n/4) rows, so its scale barely changes. Needs ≥ 8 training rows, else no widening.

Score of a row: ``sqrt(mean_j z_j²)`` (``aggregate="rms"``, default) or ``max_j |z_j|`` (``"max"``:
one deviating signal among many is not diluted). Contributions: ``z_j² / Σ z²``.
Explainable and cheap (O(d) per row); with trailing-mean features it is the SKAB winner here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from analytics.detectors.base import FloatArray, as_matrix, robust_center_scale, shares


class RobustZDetector:
    """See module docstring. ``rel_floor``: scale floor as a fraction of |median| (default 0.003);
    ``drift``: the training-drift widening factor (default 0: none)."""

    name: ClassVar[str] = "robust_z"

    def __init__(self, rel_floor: float = 0.003, aggregate: str = "rms", use_std: bool = True,
                 tail_quantile: float | None = None, drift: float = 0.0) -> None:
        if rel_floor < 0:
            raise ValueError("rel_floor must be >= 0")
        if aggregate not in ("rms", "max"):
            raise ValueError("aggregate must be 'rms' or 'max'")
        if tail_quantile is not None and not 0 < tail_quantile <= 1:
            raise ValueError("tail_quantile must be in (0, 1]")
        if not drift >= 0:
            raise ValueError("drift must be >= 0")
        self.rel_floor = rel_floor
        self.aggregate = aggregate
        self.use_std = use_std
        self.tail_quantile = tail_quantile
        self.drift = float(drift)
        self.center_: FloatArray | None = None
        self.scale_: FloatArray | None = None
        self._up: FloatArray | None = None
        self._down: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {"rel_floor": self.rel_floor, "aggregate": self.aggregate, "use_std": self.use_std,
                "tail_quantile": self.tail_quantile, "drift": self.drift}

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        self.center_, self.scale_ = robust_center_scale(arr, self.rel_floor, use_std=self.use_std)
        if self.drift > 0 and len(arr) >= 8:
            quarter = len(arr) // 4
            moved = np.abs(np.median(arr[-quarter:], axis=0) - np.median(arr[:quarter], axis=0))
            self.scale_ = np.hypot(self.scale_, self.drift * moved)
        self._up = self._down = None
        if self.tail_quantile is not None:
            z = (arr - self.center_) / self.scale_
            q = self.tail_quantile
            self._up = np.array([_tail(c[c > 0], q) for c in z.T])
            self._down = np.array([_tail(-c[c < 0], q) for c in z.T])
        return self

    def _z(self, X: FloatArray) -> FloatArray:
        if self.center_ is None or self.scale_ is None:
            raise RuntimeError("RobustZDetector: call fit() before score()")
        arr = as_matrix(X, len(self.center_), where="score X")
        z: FloatArray = (arr - self.center_) / self.scale_
        if self._up is not None and self._down is not None:
            z = np.where(z > 0, z / self._up, z / self._down)
        return z

    def score(self, X: FloatArray) -> FloatArray:
        z = self._z(X)
        if self.aggregate == "max":
            peak: FloatArray = np.max(np.abs(z), axis=1)
            return peak
        out: FloatArray = np.sqrt(np.mean(z * z, axis=1))
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        z = self._z(X)
        return shares(z * z)


def _tail(values: FloatArray, q: float) -> float:
    """The ``q`` quantile of ``values`` (one side's |z|), floored at 1 (1 when there are none)."""
    return max(float(np.quantile(values, q)), 1.0) if len(values) else 1.0
