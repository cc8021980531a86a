"""PCA T² + Q (squared prediction error) detector, on robustly scaled signals.

Fit: robust scaling, then PCA keeping ``variance`` of the variance. Score of a row:
``T²/T²_ref + Q/Q_ref`` where the references are the ``ref_quantile`` of the training rows, so
1.0 means "as far out as the training tail" on each statistic. Contributions: per-column share
of ``T²/T²_ref`` (via the whitened loadings) plus ``Q`` residual squares ``/Q_ref``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from analytics.detectors.base import FloatArray, as_matrix, robust_center_scale, shares


class PCAT2QDetector:
    """See module docstring."""

    name: ClassVar[str] = "pca_t2q"

    def __init__(self, variance: float = 0.9, rel_floor: float = 0.003, ref_quantile: float = 0.99) -> None:
        if not 0 < variance <= 1:
            raise ValueError("variance must be in (0, 1]")
        self.variance = variance
        self.rel_floor = rel_floor
        self.ref_quantile = ref_quantile
        self._fitted: dict[str, FloatArray] = {}
        self._refs = (1.0, 1.0)

    def params(self) -> dict[str, Any]:
        return {"variance": self.variance, "rel_floor": self.rel_floor, "ref_quantile": self.ref_quantile}

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        center, scale = robust_center_scale(arr, self.rel_floor)
        Z = (arr - center) / scale
        mean = Z.mean(axis=0)
        _, s, vt = np.linalg.svd(Z - mean, full_matrices=False)
        var = s**2 / max(len(Z) - 1, 1)
        ratio = np.cumsum(var) / max(var.sum(), 1e-12)
        k = int(np.searchsorted(ratio, self.variance) + 1)
        k = min(k, vt.shape[0])
        self._fitted = {"center": center, "scale": scale, "mean": mean, "P": vt[:k].T,
                        "lam": np.maximum(var[:k], 1e-9)}
        t2, q = self._stats(arr)
        self._refs = (max(float(np.quantile(t2.sum(1), self.ref_quantile)), 1e-9),
                      max(float(np.quantile(q.sum(1), self.ref_quantile)), 1e-9))
        return self

    def _stats(self, arr: FloatArray) -> tuple[FloatArray, FloatArray]:
        f = self._fitted
        Z = (arr - f["center"]) / f["scale"] - f["mean"]
        T = Z @ f["P"]
        # per-column decomposition of T² = Σ_k t_k²/λ_k = Σ_j z_j Σ_k P_jk t_k/λ_k
        t2_parts = Z * ((T / f["lam"]) @ f["P"].T)
        resid = Z - T @ f["P"].T
        return t2_parts, resid * resid

    def _checked(self, X: FloatArray) -> FloatArray:
        if not self._fitted:
            raise RuntimeError("PCAT2QDetector: call fit() before score()")
        return as_matrix(X, len(self._fitted["center"]), where="score X")

    def score(self, X: FloatArray) -> FloatArray:
        t2, q = self._stats(self._checked(X))
        out: FloatArray = np.maximum(t2.sum(1), 0.0) / self._refs[0] + q.sum(1) / self._refs[1]
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        t2, q = self._stats(self._checked(X))
        return shares(np.maximum(t2, 0.0) / self._refs[0] + q / self._refs[1])
