"""The ``Detector`` contract every anomaly detector implements.

Call order: ``fit(X)`` once on normal-operation rows, then ``score(X)`` / ``contributions(X)``
any number of times, from one thread at a time. ``X`` is a 2-D float matrix, one row per
sample time and one column per signal/feature, with the same columns in the same order at fit
and score time. Rows are scored independently (a detector has no memory between rows; time
context comes from :mod:`analytics.features`), so scoring is online by construction.

Score direction: higher = more anomalous, finite, ``>= 0``. ``contributions`` gives, per row,
each column's share of the score (non-negative, summing to 1, or all zero when nothing
deviates) so an engineer sees which signals drove it ("top contributors").
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from analytics.errors import DataError

FloatArray = NDArray[np.float64]


@runtime_checkable
class Detector(Protocol):
    """An unsupervised, row-wise anomaly detector (see module docstring for the contract)."""

    name: ClassVar[str]

    def fit(self, X: FloatArray) -> Self: ...

    def score(self, X: FloatArray) -> FloatArray: ...

    def contributions(self, X: FloatArray) -> FloatArray: ...

    def params(self) -> dict[str, Any]: ...


def as_matrix(X: object, n_features: int | None = None, where: str = "X") -> FloatArray:
    """``X`` as a finite 2-D float64 matrix; ``DataError`` naming the problem otherwise.

    A 1-D input is taken as one column. ``n_features`` (when given) must match.
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(where, f"expected a 2-D matrix (rows x signals), got {arr.ndim} dimensions")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(where, f"expected {n_features} columns (as at fit time), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(where, f"non-finite value at row {bad[0]}, column {bad[1]}")
    return arr


def shares(parts: FloatArray) -> FloatArray:
    """Row-normalise non-negative per-column parts into shares (all-zero rows stay zero)."""
    parts = np.maximum(parts, 0.0)
    total = parts.sum(axis=1, keepdims=True)
    out: FloatArray = np.divide(parts, total, out=np.zeros_like(parts), where=total > 0)
    return out


def robust_center_scale(X: FloatArray, rel_floor: float, abs_floor: float = 1e-6, *,
                        use_std: bool = True) -> tuple[FloatArray, FloatArray]:
    """Per-column median and a robust scale with a floor.

    scale = max(IQR/1.349, std (if ``use_std``), rel_floor·|median|, abs_floor): a constant
    training column still gets a finite scale (so a later change in it scores high instead of
    dividing by zero).
    """
    med = np.median(X, axis=0)
    q75, q25 = np.quantile(X, [0.75, 0.25], axis=0)
    floor = np.maximum(rel_floor * np.abs(med), abs_floor)
    scale = np.maximum.reduce([(q75 - q25) / 1.349, X.std(axis=0) if use_std else floor, floor])
    return med.astype(np.float64), scale.astype(np.float64)


def top_contributors(names: list[str], shares_row: FloatArray, k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` largest (signal, share) pairs of one row of ``contributions``, largest first."""
    order = np.argsort(-shares_row)[:k]
    return [(names[i], float(shares_row[i])) for i in order if shares_row[i] > 0]
