"""Online (trailing) window features: each output row uses only that row and earlier ones.

``TrailingMean`` keeps the last ``window − 1`` rows between calls, so feeding a stream in chunks
of any size gives exactly the same output as one call on the whole stream. ``reset()`` forgets
the past (after a gap in time the window restarts; the first rows average fewer samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analytics.detectors.base import FloatArray


class TrailingMean:
    """Mean of the last ``window`` rows (fewer at the start or after ``reset``), per column."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._tail: FloatArray | None = None

    def reset(self) -> None:
        self._tail = None

    def transform(self, X: FloatArray) -> FloatArray:
        """Trailing means of the rows of ``X`` (2-D), continuing the previous call's window."""
        if len(X) == 0:
            return np.empty((0, X.shape[1]))
        tail = self._tail if self._tail is not None else np.empty((0, X.shape[1]))
        full = np.vstack([tail, X])
        cs = np.vstack([np.zeros((1, full.shape[1])), np.cumsum(full, axis=0)])
        end = np.arange(len(tail) + 1, len(full) + 1)
        # the window never reaches before the retained tail (tail holds at most window-1 rows)
        start = np.maximum(end - self.window, 0)
        out: FloatArray = (cs[end] - cs[start]) / (end - start)[:, None]
        keep = self.window - 1
        self._tail = full[max(len(full) - keep, 0):].copy() if keep > 0 else None
        return out


class MultiScaleMeans:
    """Trailing means over several windows, side by side: columns ``[w0: x0..xd, w1: x0..xd, ...]``."""

    def __init__(self, windows: Sequence[int]) -> None:
        if not windows:
            raise ValueError("at least one window")
        self.windows = list(windows)
        self._means = [TrailingMean(w) for w in self.windows]

    def reset(self) -> None:
        for m in self._means:
            m.reset()

    def transform(self, X: FloatArray) -> FloatArray:
        return np.hstack([m.transform(X) for m in self._means])

    def names(self, columns: Sequence[str]) -> list[str]:
        """Feature names, e.g. ``Current@mean5``."""
        return [f"{c}@mean{w}" for w in self.windows for c in columns]
