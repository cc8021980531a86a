"""An online anomaly model: trailing features → detector → calibrated score → persistent flag.

``AnomalyModel.fit(X)`` learns from normal-operation rows (features are computed on them from a
fresh state); the threshold is ``quantile(training scores, threshold_quantile) × threshold_factor``.
``AnomalyModel.stream()`` returns a :class:`StreamScorer` that scores rows in time order, in chunks
of any size, with results identical to one pass over all rows: the output for a row depends only
on that row, earlier rows and the fitted model (online).

Outputs per row: ``raw`` (detector score, ≥ 0), ``score = raw / (raw + threshold)`` in [0, 1)
(0.5 = at the threshold), and ``flag``: true when at least ``vote_fraction`` of the last
``vote_window`` rows are above the threshold (a trailing majority vote that suppresses one-off
spikes and bridges short dips; it delays onset by about ``vote_window·vote_fraction`` rows).
Rows after a start or reset whose windows are still filling are handled by ``ModelSpec.settle``:
``"blank"`` (the default) does not score the first ``max(diff_windows)`` rows (raw 0; left out of
fitting); ``"median"`` scores every row, each trailing feature reading as its training median
until its own window is full (in fitting as in scoring), so a long window does not blind the
short ones after every restart.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationInfo, field_validator

from analytics.detectors import Detector, FloatArray, as_matrix, check_detector, detector_class, make_detector
from analytics.features import MultiScaleMeans, TrailingMean
from zhizao.config import StrictModel

DEFAULT_DETECTOR_PARAMS: dict[str, Any] = {"rel_floor": 0.003}


class ModelSpec(StrictModel):
    """Hyper-parameters of an :class:`AnomalyModel` (fixed once, the same for every file/machine).

    Provenance of the defaults (threshold factor 1.25, vote over 15 rows, 5-row trailing mean,
    ``rel_floor`` 0.003): chosen on SKAB results in session 1 (a sweep whose outcome was read on
    SKAB's pooled test rows), so they are not a result on SKAB. They are kept unchanged because
    the live scorer, the CSV scorer and the simulated-line evaluation use them; the SKAB
    evaluation does not — it uses its own frozen configuration (``analytics/skab/frozen.py``).
    """

    detector: str = "robust_z"
    """A name of :data:`analytics.detectors.DETECTORS` (checked when the spec is made or loaded)."""
    detector_params: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_DETECTOR_PARAMS),
                                            validate_default=True)
    """Keyword arguments of the detector's constructor (checked against it, nothing is fitted)."""
    windows: list[int] = Field(default_factory=lambda: [5], min_length=1)
    """Trailing-mean windows (rows) applied to every column."""
    diff_windows: list[int] = Field(default_factory=list)
    """Trailing mean-absolute-difference windows (rows): catch frozen or chattering sensors."""
    threshold_quantile: float = Field(0.99, gt=0, le=1)
    threshold_factor: float = Field(1.25, gt=0)
    vote_window: int = Field(15, ge=1)
    vote_fraction: float = Field(0.5, gt=0, le=1)
    settle: Literal["blank", "median"] = "blank"
    """Rows whose windows are still filling after a start or reset: ``"blank"`` leaves the first
    ``max(diff_windows)`` unscored; ``"median"`` reads each filling feature as its training median."""

    @field_validator("windows", "diff_windows")
    @classmethod
    def _whole_rows(cls, v: list[int], info: ValidationInfo) -> list[int]:
        """Every window is at least 1 row (a window of 0 or fewer rows fails deep in the feature
        code, for the CSV scorer, ``train`` and the scoring service alike)."""
        bad = [f"{info.field_name}[{i}]: a window is at least 1 row, not {w}"
               for i, w in enumerate(v) if w < 1]
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, v: str) -> str:
        detector_class(v)  # ValueError naming the choices
        return v

    @field_validator("detector_params")
    @classmethod
    def _detector_accepts(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("detector")
        if name is None:  # the detector itself is invalid: reported on its own key
            return v
        try:
            check_detector(name, v)
        except ValueError as exc:
            note = ""
            if v == DEFAULT_DETECTOR_PARAMS:
                shown = ", ".join(f"{k} = {val}" for k, val in DEFAULT_DETECTOR_PARAMS.items())
                note = (f" (detector_params defaults to robust_z's {{ {shown} }}; set "
                        f"detector_params = {{}} for {name}'s own defaults)")
            raise ValueError(f"{exc}{note}") from None
        return v

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """Unpickling an artifact saved before a field existed gives that field its default
        (fields are only ever added with a default that keeps the old behaviour)."""
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values:
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)


@dataclass
class ScoredChunk:
    """Per-row results of :meth:`StreamScorer.push` (arrays of equal length)."""

    raw: FloatArray
    score: FloatArray
    flag: NDArray[np.bool_]
    contributions: FloatArray | None = None
    warming: NDArray[np.bool_] | None = None
    """Rows within :attr:`AnomalyModel.warmup_rows` of a (re)start: their flag is false whatever
    the data (``None``: not computed)."""


@dataclass
class AnomalyModel:
    """A fitted (or not yet fitted) online model; see module docstring."""

    spec: ModelSpec = field(default_factory=ModelSpec)
    columns: list[str] = field(default_factory=list)
    detector: Detector | None = None
    threshold: float = 0.0
    n_train: int = 0
    medians: FloatArray | None = None
    """Per feature, its training median (``settle="median"``: what a filling window reads as)."""
    states: Literal["running", "all"] = "running"
    """Which of a machine's rows the live scorers give it: ``"running"`` only (equipment health,
    compared in a comparable operating state) or ``"all"`` (an energy model, whose columns hold the
    state): :mod:`analytics.scoring.context`. Artifacts saved before it read the class default."""
    threshold_floored: bool = False
    """True when every training score was 0 (each feature constant in training), so the threshold
    is one feature moving by its scale floor, not the quantile (see :func:`_floor_threshold`).
    Artifacts saved before it read the class default."""

    @property
    def settle_rows(self) -> int:
        """Rows after a (re)start that are not scored (score 0): with ``settle="blank"``, those
        whose difference windows are still filling; none with ``settle="median"``."""
        return max(self.spec.diff_windows, default=0) if self.spec.settle == "blank" else 0

    @property
    def warmup_rows(self) -> int:
        """Rows after a (re)start whose flag is false whatever the data says: the rows no feature
        reads yet (``settle="blank"``: the unscored rows; ``"median"``: until the shortest window
        fills, if the all-median row scores below the threshold), then the rows the vote needs to
        reach ``vote_fraction`` of its window with every row above. A flag false there is "not yet
        judged", not "normal"."""
        blind = 0
        if self.spec.settle == "blank":
            blind = self.settle_rows
        elif self.medians is not None and self.detector is not None:
            typical = float(self.detector.score(self.medians[None, :])[0])
            windows = self.feature_windows()
            blind = int(windows.min()) if len(windows) and typical <= self.threshold else 0
        k = 1
        while k / min(blind + k, self.spec.vote_window) < self.spec.vote_fraction - 1e-12:
            k += 1
        return blind + k - 1

    def feature_windows(self) -> NDArray[np.int64]:
        """Per feature column (in :meth:`feature_names` order), the rows its window spans."""
        windows = MultiScaleMeans(self.spec.windows, self.spec.diff_windows).column_windows(len(self.columns))
        return np.array(windows, dtype=np.int64)

    def feature_names(self) -> list[str]:
        return MultiScaleMeans(self.spec.windows, self.spec.diff_windows).names(self.columns)

    def fit(self, X: FloatArray, columns: list[str] | None = None,
            resets: NDArray[np.bool_] | None = None) -> Self:
        """Learn the detector and the threshold from normal rows ``X`` (time order).

        ``resets`` as in :meth:`StreamScorer.push`: where the training rows are pieces of time
        (e.g. a machine's running periods, concatenated), the windows restart at each piece, so
        training sees the same features scoring will — no window spans a stop. Only the first
        piece's settling rows are left out (unless that is half of them or more): the rows after
        a later restart stay in, so the normal range includes how the machine comes back (a
        temperature recovering after a stop outlasts the settling rows)."""
        arr = as_matrix(X, where="training rows")
        if len(arr) < 2:
            raise ValueError("need at least 2 training rows")
        if resets is not None and len(resets) != len(arr):
            raise ValueError(f"resets has {len(resets)} entries for {len(arr)} training rows")
        self.columns = list(columns) if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
        features = MultiScaleMeans(self.spec.windows, self.spec.diff_windows)
        starts = [0] if resets is None else sorted({0, *np.flatnonzero(resets).tolist()})
        parts, ages = [], []
        for a, b in itertools.pairwise([*starts, len(arr)]):
            features.reset()
            parts.append(features.transform(arr[a:b]))
            ages.append(np.arange(b - a))
        feats = np.vstack(parts)
        if self.spec.settle == "median":
            filling = np.concatenate(ages)[:, None] < self.feature_windows()[None, :]
            self.medians = _filled_medians(feats, filling)
            feats = np.where(filling, self.medians[None, :], feats)
        else:
            self.medians = None
            if len(feats) > 2 * self.settle_rows:
                feats = feats[self.settle_rows:]
        self.detector = make_detector(self.spec.detector, **self.spec.detector_params).fit(feats)
        s = self.detector.score(feats)
        self.threshold = float(np.quantile(s, self.spec.threshold_quantile)) * self.spec.threshold_factor
        self.threshold_floored = False
        if not self.threshold > _DEGENERATE:
            self.threshold = _floor_threshold(self.detector, feats)
            self.threshold_floored = self.threshold > _DEGENERATE
        self.n_train = len(arr)
        return self

    def stream(self) -> StreamScorer:
        if self.detector is None:
            raise RuntimeError("AnomalyModel: call fit() before stream()")
        return StreamScorer(self)


_DEGENERATE = 1e-12
"""A threshold at or below this is no threshold: every training score was (about) 0."""


def _floor_threshold(detector: Detector, feats: FloatArray) -> float:
    """The threshold of a model whose training scores were all 0 (every feature constant in
    training): the lowest score of one feature moving from its training level by its scale floor
    (``rel_floor`` × the level, 1e-6 at a zero level) — the smallest change the detector resolves —
    so a change below the floor stays below the threshold. 1e-12 if even that scores 0 (a detector
    without a scale floor): any change then flags, as before."""
    level = np.median(feats, axis=0)
    rel = float(getattr(detector, "rel_floor", DEFAULT_DETECTOR_PARAMS["rel_floor"]))
    probes = level[None, :] + np.diag(np.maximum(rel * np.abs(level), 1e-6))
    floor = float(np.min(detector.score(probes)))
    return floor if np.isfinite(floor) and floor > _DEGENERATE else _DEGENERATE


def _filled_medians(feats: FloatArray, filling: NDArray[np.bool_]) -> FloatArray:
    """Per column, the median of its rows whose window was full (of all its rows if none was)."""
    out: FloatArray = np.array([np.median(col[~fill] if not fill.all() else col)
                                for col, fill in zip(feats.T, filling.T, strict=True)])
    return out


def piece_starts(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """For the rows ``X[mask]`` of a time-ordered ``X``: true where a piece of consecutive
    selected rows begins (the ``resets`` of :meth:`AnomalyModel.fit` and :meth:`StreamScorer.push`)."""
    starts: NDArray[np.bool_] = (~np.r_[False, mask[:-1]])[mask]
    return starts


class StreamScorer:
    """Stateful, chunkable online scorer for one series of rows (one machine, one file)."""

    def __init__(self, model: AnomalyModel) -> None:
        assert model.detector is not None
        self.model = model
        self._detector: Detector = model.detector
        self._features = MultiScaleMeans(model.spec.windows, model.spec.diff_windows)
        self._vote = TrailingMean(model.spec.vote_window)
        self._since_reset = 0
        self._windows = model.feature_windows()
        self._longest = int(self._windows.max(initial=0))
        self._warmup = model.warmup_rows

    def get_state(self) -> dict[str, Any]:
        """The scorer's running state (trailing windows, vote, rows since reset) — picklable and
        small; :meth:`set_state` on a scorer of the same model continues exactly where this one was."""
        return {"features": copy.deepcopy(self._features), "vote": copy.deepcopy(self._vote),
                "since_reset": self._since_reset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._features = copy.deepcopy(state["features"])
        self._vote = copy.deepcopy(state["vote"])
        self._since_reset = int(state["since_reset"])

    def reset(self) -> None:
        """Forget the past (after a gap in time): windows and the vote restart."""
        self._features.reset()
        self._vote.reset()
        self._since_reset = 0

    def push(self, X: FloatArray, with_contributions: bool = False,
             resets: NDArray[np.bool_] | None = None) -> ScoredChunk:
        """Score the next rows (time order). Rows must be finite (impute NaNs before).

        ``resets[i]`` true restarts the windows before row ``i`` (a gap in time, or the machine
        re-entering a scored state): no window averages across the discontinuity.
        """
        if resets is not None and resets.any():
            bounds = sorted({0, *np.flatnonzero(resets).tolist(), len(X)})
            parts = []
            for a, b in itertools.pairwise(bounds):
                if resets[a]:
                    self.reset()
                parts.append(self.push(X[a:b], with_contributions))
            pieces = [p.contributions for p in parts if p.contributions is not None]
            return ScoredChunk(raw=np.concatenate([p.raw for p in parts]),
                               score=np.concatenate([p.score for p in parts]),
                               flag=np.concatenate([p.flag for p in parts]),
                               contributions=np.vstack(pieces) if with_contributions else None,
                               warming=np.concatenate([p.warming for p in parts if p.warming is not None]))
        arr = as_matrix(X, len(self.model.columns), where="rows")
        feats = self._features.transform(arr)
        if self.model.medians is not None and self._since_reset < self._longest:
            age = self._since_reset + np.arange(len(arr))
            filling = age[:, None] < self._windows[None, :]
            feats = np.where(filling, self.model.medians[None, :], feats)
        raw = self._detector.score(feats)
        settle = self.model.settle_rows - self._since_reset
        if settle > 0:
            raw[:settle] = 0.0
        warming = np.arange(len(arr)) < self._warmup - self._since_reset
        self._since_reset += len(arr)
        above = (raw > self.model.threshold).astype(np.float64)[:, None]
        flag = self._vote.transform(above)[:, 0] >= self.model.spec.vote_fraction - 1e-12
        score = raw / (raw + self.model.threshold)
        contrib = self._detector.contributions(feats) if with_contributions else None
        return ScoredChunk(raw=raw, score=score, flag=flag, contributions=contrib, warming=warming)
