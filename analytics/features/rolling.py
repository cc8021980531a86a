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


class TrailingAbsDiffMean:
    """Mean of ``|x_t − x_{t−1}|`` over the last ``window`` rows: how much a signal moves.

    A frozen (stuck or dropped-out) sensor drives it to 0, a chattering one up. The first row
    after construction or ``reset`` has difference 0.
    """

    def __init__(self, window: int) -> None:
        self._mean = TrailingMean(window)
        self._last: FloatArray | None = None

    def reset(self) -> None:
        self._mean.reset()
        self._last = None

    def transform(self, X: FloatArray) -> FloatArray:
        if len(X) == 0:
            return np.empty((0, X.shape[1]))
        prev = np.vstack([X[:1] if self._last is None else self._last, X[:-1]])
        self._last = X[-1:].copy()
        return self._mean.transform(np.abs(X - prev))


class MultiScaleMeans:
    """Trailing means over several windows, then trailing mean absolute differences, side by side:
    columns ``[mean w0: x0..xd, mean w1: ..., absdiff v0: x0..xd, ...]``."""

    def __init__(self, windows: Sequence[int], diff_windows: Sequence[int] = ()) -> None:
        if not windows:
            raise ValueError("at least one window")
        self.windows = list(windows)
        self.diff_windows = list(diff_windows)
        self._parts: list[TrailingMean | TrailingAbsDiffMean] = [TrailingMean(w) for w in self.windows]
        self._parts += [TrailingAbsDiffMean(w) for w in self.diff_windows]

    def reset(self) -> None:
        for m in self._parts:
            m.reset()

    def transform(self, X: FloatArray) -> FloatArray:
        return np.hstack([m.transform(X) for m in self._parts])

    def column_windows(self, n_columns: int) -> list[int]:
        """Per output column (in :meth:`names` order), the rows its window spans."""
        return [w for w in [*self.windows, *self.diff_windows] for _ in range(n_columns)]

    def names(self, columns: Sequence[str]) -> list[str]:
        """Feature names, e.g. ``Current@mean5``, ``Current@absdiff60``."""
        return ([f"{c}@mean{w}" for w in self.windows for c in columns]
                + [f"{c}@absdiff{w}" for w in self.diff_windows for c in columns])
