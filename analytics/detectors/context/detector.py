"""Context-aware wrapper: one inner detector per operating context (state, product, regime).

Column ``context_index`` of ``X`` holds an integer context code (e.g. from
:func:`analytics.features.context.encode_context`: running×product A = 3 ...). ``fit`` trains one
inner detector per context in ``contexts`` (default: every context seen with ≥ ``min_rows``
rows). ``score`` scores each row with its own context's model, so a machine is only compared
with itself in a comparable state; rows of other contexts (idle, setup, an unseen product) score
0 and are listed by :meth:`scored_mask`. The context column never contributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from analytics.detectors.base import Detector, FloatArray, as_matrix


class ContextDetector:
    """See module docstring. ``factory`` builds a fresh inner detector."""

    name: ClassVar[str] = "context"

    def __init__(self, factory: Callable[[], Detector], context_index: int = 0,
                 contexts: Iterable[int] | None = None, min_rows: int = 30) -> None:
        self.factory = factory
        self.context_index = context_index
        self.contexts = None if contexts is None else sorted(set(contexts))
        self.min_rows = min_rows
        self.models_: dict[int, Detector] = {}
        self._d = 0

    def params(self) -> dict[str, Any]:
        return {"context_index": self.context_index, "contexts": self.contexts, "min_rows": self.min_rows,
                "inner": {c: m.params() for c, m in self.models_.items()}}

    def _split(self, arr: FloatArray) -> tuple[NDArray[np.int64], FloatArray]:
        ci = self.context_index % arr.shape[1]
        return arr[:, ci].astype(np.int64), np.delete(arr, ci, axis=1)

    def fit(self, X: FloatArray) -> Self:
        arr = as_matrix(X, where="fit X")
        codes, rest = self._split(arr)
        wanted = self.contexts if self.contexts is not None else sorted({int(c) for c in codes})
        self.models_ = {}
        for c in wanted:
            rows = rest[codes == c]
            if len(rows) >= self.min_rows:
                self.models_[c] = self.factory().fit(rows)
        self._d = arr.shape[1]
        return self

    def scored_mask(self, X: FloatArray) -> NDArray[np.bool_]:
        """True for rows whose context has a model (the others score 0)."""
        codes, _ = self._split(as_matrix(X, self._d, where="score X"))
        return np.isin(codes, list(self.models_))

    def score(self, X: FloatArray) -> FloatArray:
        codes, rest = self._split(as_matrix(X, self._d, where="score X"))
        out = np.zeros(len(codes))
        for c, model in self.models_.items():
            m = codes == c
            if m.any():
                out[m] = model.score(rest[m])
        return out

    def contributions(self, X: FloatArray) -> FloatArray:
        arr = as_matrix(X, self._d, where="score X")
        codes, rest = self._split(arr)
        inner = np.zeros_like(rest)
        for c, model in self.models_.items():
            m = codes == c
            if m.any():
                inner[m] = model.contributions(rest[m])
        return np.insert(inner, self.context_index % self._d, 0.0, axis=1)
