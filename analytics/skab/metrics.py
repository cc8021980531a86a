"""SKAB's metrics, exactly as ``PROTOCOL.md`` states them.

Outlier detection: pooled (micro-averaged) ``F1 = TP/(TP + (FP+FN)/2)``, ``FAR% = 100·FP/(FP+TN)``,
``MAR% = 100·FN/(FN+TP)``.

Changepoint detection (a NAB variant): each true changepoint ``t`` gets the window ``[t, t+60 s]``;
a window overlapping the previous one starts at the previous one's right edge. The first
prediction inside a window scores ``y = (A_tp−A_fp)/2·(−tanh(x)/tanh(π/2)) + (A_tp−A_fp)/2 + A_fp``
with ``x = linspace(−π/2, π/2, 1000)`` indexed by its relative position in the window; a window
without prediction scores ``A_fn``; each prediction outside every window scores ``A_fp``.
``score = 100·(S − S_null)/(S_perfect − S_null)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]

PROFILES: Final[dict[str, tuple[float, float, float]]] = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
WINDOW_S: Final = 60
_X: Final = np.linspace(-np.pi / 2, np.pi / 2, 1000)


@dataclass(frozen=True)
class OutlierMetrics:
    f1: float
    far: float
    mar: float
    tp: int
    fp: int
    fn: int
    tn: int


def outlier_metrics(y_true: Sequence[IntArray], y_pred: Sequence[IntArray]) -> OutlierMetrics:
    """Pooled F1/FAR%/MAR% over all files' test parts (unrounded; round to 2 decimals to report)."""
    y = np.concatenate(list(y_true)).astype(bool)
    p = np.concatenate(list(y_pred)).astype(bool)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} predictions")
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())
    f1 = tp / (tp + (fp + fn) / 2) if tp + fp + fn else 1.0
    far = 100.0 * fp / (fp + tn) if fp + tn else 0.0
    mar = 100.0 * fn / (fn + tp) if fn + tp else 0.0
    return OutlierMetrics(f1=f1, far=far, mar=mar, tp=tp, fp=fp, fn=fn, tn=tn)


def nab_windows(ts: IntArray, changepoint: IntArray, window_s: int = WINDOW_S) -> list[tuple[int, int]]:
    """``[(start, end)]`` in seconds for each true changepoint, overlaps cut at the previous right edge."""
    windows: list[tuple[int, int]] = []
    for t in ts[changepoint.astype(bool)]:
        start, end = int(t), int(t) + window_s
        if windows and start < windows[-1][1]:
            start = windows[-1][1]
        windows.append((start, end))
    return windows


def _reward(pos: float, a_tp: float, a_fp: float) -> float:
    i = min(max(int(pos * (len(_X) - 1)), 0), len(_X) - 1)
    half = (a_tp - a_fp) / 2
    return float(half * (-np.tanh(_X[i]) / np.tanh(np.pi / 2)) + half + a_fp)


def nab_score(ts: Sequence[IntArray], changepoint: Sequence[IntArray], predicted: Sequence[IntArray],
              profile: str = "standard") -> float:
    """The NAB score (0 = null detector, 100 = perfect) pooled over files, for one profile."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    total = 0.0
    n_windows = 0
    for t, cp, pred in zip(ts, changepoint, predicted, strict=True):
        detections = t[pred.astype(bool)]
        used = np.zeros(len(detections), dtype=bool)
        for start, end in nab_windows(t, cp):
            n_windows += 1
            inside = np.flatnonzero((detections >= start) & (detections <= end))
            if len(inside):
                used[inside] = True
                pos = (detections[inside[0]] - start) / max(end - start, 1)
                total += _reward(float(pos), a_tp, a_fp)
            else:
                total += a_fn
        total += a_fp * int((~used).sum())
    null, perfect = n_windows * a_fn, n_windows * a_tp
    return 100.0 * (total - null) / (perfect - null) if perfect != null else 0.0


def changepoints_from_flags(flag: IntArray, refractory: int = 0) -> IntArray:
    """Predicted changepoints: every 0→1 and 1→0 transition of the flag (none at the first row),
    skipping any within ``refractory`` rows of the previous one."""
    f = flag.astype(np.int64)
    cp = np.zeros_like(f)
    cp[1:] = np.abs(np.diff(f))
    if refractory > 0:
        last = -(10**9)
        for i in np.flatnonzero(cp):
            if i - last < refractory:
                cp[i] = 0
            else:
                last = int(i)
    return cp
