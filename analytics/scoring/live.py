"""Streaming scoring of one machine: rows in → ``anomaly_score`` samples and anomaly events out.

:class:`MachineScorer` wraps a fitted :class:`AnomalyModel` for one machine (asset path). Each
``process`` call scores the next rows (time order, online), and returns

* a :class:`~ingest.storage.base.SampleFrame` of ``anomaly_score`` samples (one per scored row,
  in [0, 1), signal :data:`zhizao.signals.ANOMALY_SCORE` or, for a model other than ``health``,
  ``anomaly_score.<model>``: :mod:`analytics.scoring.context`) to write back to the store, and
* the anomaly :class:`~zhizao.events.Event` updates (open / peak update / resolved, one id per
  episode) from the shared :class:`analytics.events.EpisodeTracker` (debounced: an episode opens
  after the flag held ``open_after_s`` and resolves after it was clear ``clear_after_s``), with
  the top contributing signals.

Rows outside comparable operating states (``running`` false) are not scored: no sample is
written for them and the episode state does not change. The first row scored after such rows (a
return to running) or after a ``resets`` gap restarts the trailing windows — as training does,
so no window spans a stop — and is the tracker's ``resumed`` observation: the debounce timers
restart there (``hold_across_gaps``: pause through the stop, and the model's warm-up rows after it —
:attr:`AnomalyModel.warmup_rows`, flag false whatever the data — count neither as held nor as
clear), an open episode stays open across the stop. :func:`write_back` sends both outputs.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from analytics.detectors import top_contributors
from analytics.events import (
    ANOMALY_CLEAR_AFTER_S,
    ANOMALY_HOLD_ACROSS_GAPS,
    ANOMALY_OPEN_AFTER_S,
    EpisodeTracker,
)
from analytics.scoring.model import AnomalyModel
from ingest.storage.base import SampleFrame
from zhizao import signals as sig
from zhizao.events import Contributor, Event, EventSource


class MachineScorer:
    """See module docstring. Not thread-safe: one instance per machine, driven from one task."""

    def __init__(self, asset: str, model: AnomalyModel, *, rule: str = "anomaly",
                 open_after_s: float = ANOMALY_OPEN_AFTER_S, clear_after_s: float = ANOMALY_CLEAR_AFTER_S,
                 hold_across_gaps: bool = ANOMALY_HOLD_ACROSS_GAPS, top_k: int = 3,
                 signal: str = sig.ANOMALY_SCORE) -> None:
        self.asset = asset
        self.model = model
        self.signal = signal
        """The score series written (``anomaly_score``, or ``anomaly_score.<model>``)."""
        self._scorer = model.stream()
        self.tracker = EpisodeTracker(source=EventSource.ANOMALY, rule=rule, threshold=0.5,
                                      open_after_s=open_after_s, clear_after_s=clear_after_s,
                                      hold_across_gaps=hold_across_gaps)
        self.top_k = top_k
        self._last_running = True
        self._resume_pending = False
        """A resumption whose rows so far were all warm-up (``hold_across_gaps``): the next judged
        row is the tracker's resumed observation."""
        """Whether the last row of the previous :meth:`process` call was scored."""
        n = len(model.columns)
        # feature j (window w, column c) belongs to signal column j % n
        self._owner = np.arange(len(model.feature_names())) % n

    def snapshot(self) -> bytes:
        """The scorer's and the episode tracker's state, pickled (not the model): :meth:`restore`
        on a scorer of the same model continues exactly here — same scores, same episode ids."""
        return pickle.dumps({"scorer": self._scorer.get_state(), "tracker": self.tracker,
                             "last_running": self._last_running, "resume_pending": self._resume_pending},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Inverse of :meth:`snapshot` (only for blobs this process or a trusted one wrote). The
        tracker's episodes and timers come from the snapshot, its settings (delays,
        ``hold_across_gaps``) from this scorer: a changed configuration applies after a restart."""
        state = pickle.loads(blob)  # the service's own state file
        self._scorer.set_state(state["scorer"])
        tracker = state["tracker"]
        if not isinstance(tracker, EpisodeTracker):
            raise TypeError("scorer snapshot holds no EpisodeTracker")
        self.tracker.adopt_state(tracker)
        self._last_running = bool(state.get("last_running", True))  # snapshots before it: no restart
        self._resume_pending = bool(state.get("resume_pending", False))

    def process(self, ts_us: NDArray[np.int64], X: NDArray[np.float64],
                running: NDArray[np.bool_] | None = None,
                resets: NDArray[np.bool_] | None = None) -> tuple[SampleFrame, list[Event]]:
        """Score the next rows; ``resets[i]`` restarts the trailing windows before row ``i`` (a gap
        in time). Rows with ``running`` false are skipped — unless the model scores every state
        (``model.states == "all"``: an energy model) —; the next kept row restarts the windows
        (so does a reset on a skipped row) and resumes the tracker (module docstring)."""
        every = running is None or self.model.states == "all"
        keep = np.ones(len(ts_us), dtype=bool) if every else np.asarray(running, dtype=bool)
        frame = SampleFrame()
        events: list[Event] = []
        if not len(keep):
            return frame, events
        restart = np.zeros(len(keep), dtype=bool) if resets is None else np.asarray(resets, dtype=bool).copy()
        restart |= ~np.r_[self._last_running, keep[:-1]]  # the row after a skipped one: back to running
        self._last_running = bool(keep[-1])
        if not keep.any():
            return frame, events
        # a restart on a skipped row applies to the next kept row
        marks = np.cumsum(restart.astype(np.int64))
        idx = np.flatnonzero(keep)
        kept_resets = marks[idx] > np.r_[0, marks[idx][:-1]]
        res = self._scorer.push(X[keep], with_contributions=True,
                                resets=kept_resets if kept_resets.any() else None)
        assert res.contributions is not None
        per_signal = np.zeros((len(res.score), len(self.model.columns)))
        np.add.at(per_signal.T, self._owner, res.contributions.T)
        times: list[int] = [int(t) for t in ts_us[keep].tolist()]
        scores: list[float] = [float(v) for v in res.score.tolist()]
        n = len(times)
        frame.asset += [self.asset] * n
        frame.signal += [self.signal] * n
        frame.ts_us += times
        frame.vtype += ["f"] * n
        frame.value += scores
        frame.value_str += [None] * n
        frame.unit += [None] * n
        frame.quality += ["good"] * n
        # holding across gaps, the model's warm-up after a restart is not yet judged: part of the
        # unobserved stretch (not observed; the first judged row is the resumed observation)
        unjudged = (res.warming & ~res.flag if self.tracker.hold_across_gaps and res.warming is not None
                    else np.zeros(n, dtype=bool))
        resumes, self._resume_pending = _carry_resumes(kept_resets, unjudged, self._resume_pending)
        for t, score, flag, shares, resumed, skip in zip(times, scores, res.flag.tolist(), per_signal,
                                                         resumes.tolist(), unjudged.tolist(), strict=True):
            if skip:
                continue
            contributors = None
            if flag:  # contributors only where the tracker uses them (opening / worsening an episode)
                contributors = [Contributor(signal=s, weight=round(w, 4))
                                for s, w in top_contributors(self.model.columns, shares, self.top_k)]
            ts = datetime.fromtimestamp(t / 1e6, tz=UTC)
            events += self.tracker.observe(self.asset, ts, bool(flag), score, contributors=contributors,
                                           resumed=resumed)
        return frame, events


def _carry_resumes(resumed: NDArray[np.bool_], skipped: NDArray[np.bool_],
                   pending: bool) -> tuple[NDArray[np.bool_], bool]:
    """``resumed`` with each mark on a skipped row moved to the next row not skipped; ``pending``:
    a mark carried from the previous chunk (returned: one to carry to the next)."""
    out = resumed & ~skipped
    judged = np.flatnonzero(~skipped)
    marks = np.flatnonzero(resumed & skipped)
    if pending:
        marks = np.r_[-1, marks]
    at = np.searchsorted(judged, marks)  # each mark's next judged row
    out[judged[at[at < len(judged)]]] = True
    return out, bool((at >= len(judged)).any())


async def write_back(store: Any, emitter: Any, frame: SampleFrame, events: Sequence[Event]) -> None:
    """Write the scores to ``store`` (an ingest ``Store``) and the events through ``emitter``
    (an :class:`analytics.events.EventEmitter`); either may be ``None``."""
    if store is not None and len(frame):
        await store.write(frame)
    if emitter is not None and events:
        await emitter.emit(list(events))
