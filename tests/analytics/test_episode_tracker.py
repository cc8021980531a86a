"""The debounce's timers across an unobserved stretch (``EpisodeTracker.hold_across_gaps``) and
``due``, and ``eval sim``'s sparse observation against observing every scored tick."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analytics.events import EpisodeTracker
from analytics.events.tracker import RAISED_AT, _State
from analytics.scoring import piece_starts
from analytics.simline.evaluate import Episode, SimEvalConfig, _episode, _episodes
from zhizao.events import EventSource, EventState
from zhizao.wire import parse_ts

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def _run(tracker: EpisodeTracker, obs: Sequence[tuple[float, bool | None, bool]]) -> list[tuple[float, str]]:
    """Feed (seconds, active, resumed); return (seconds, state) of every event emitted."""
    out = []
    for s, active, resumed in obs:
        for e in tracker.observe("m", T0 + timedelta(seconds=s), active, 1.0, resumed=resumed):
            out.append((s, e.state.value))
    return out


def _held_80_stop_then_held(hold: bool) -> EpisodeTracker:
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="r", open_after_s=120, hold_across_gaps=hold)
    _run(tr, [(float(s), True, False) for s in range(0, 81, 10)])          # held 0..80 s
    return tr


def test_by_default_a_stop_restarts_the_on_delay() -> None:
    tr = _held_80_stop_then_held(False)
    after = [(1000.0 + s, True, s == 0) for s in range(0, 200, 10)]       # resumed at 1000 s
    assert _run(tr, after) == [(1120.0, "open")]


def test_holding_across_a_stop_counts_the_observed_time_only() -> None:
    tr = _held_80_stop_then_held(True)
    assert tr.due("m") == T0 + timedelta(seconds=120)
    events = []
    for s in range(0, 200, 10):
        events += tr.observe("m", T0 + timedelta(seconds=1000 + s), True, 1.0, resumed=s == 0)
        if s == 0:  # 80 s held so far; the 920-s stop does not count: 40 s to go from here
            assert tr.due("m") == T0 + timedelta(seconds=1040)
    (opened,) = events
    assert opened.start == T0                                              # first held, before the stop
    assert parse_ts(opened.details[RAISED_AT]) == T0 + timedelta(seconds=1040)


def test_one_clear_observation_still_resets_the_on_delay_when_holding() -> None:
    tr = _held_80_stop_then_held(True)
    obs = [(1000.0, False, True)] + [(1010.0 + s, True, False) for s in range(0, 200, 10)]
    assert _run(tr, obs) == [(1130.0, "open")]                            # 120 s from 1010 s


@pytest.mark.parametrize("hold, resolved_at", [(False, 1300.0), (True, 1110.0)])
def test_the_clear_delay_pauses_or_restarts_likewise(hold: bool, resolved_at: float) -> None:
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="r", open_after_s=0, clear_after_s=300,
                        hold_across_gaps=hold)
    assert _run(tr, [(0.0, True, False)]) == [(0.0, "open")]
    _run(tr, [(float(s), False, False) for s in range(10, 210, 10)])       # clear from 10 s to 200 s
    if hold:
        assert tr.due("m") == T0 + timedelta(seconds=310)
    events = []
    for s in range(0, 400, 10):                                             # stopped 200..1000 s
        for e in tr.observe("m", T0 + timedelta(seconds=1000 + s), False, 0.0, resumed=s == 0):
            events.append((1000.0 + s, e))
    ((at, done),) = events                                                  # 110 s more, or 300 s anew
    assert at == resolved_at and done.state is EventState.RESOLVED
    assert done.end == (T0 + timedelta(seconds=10) if hold else T0 + timedelta(seconds=1000))


def test_a_band_observation_keeps_the_timers_running() -> None:
    """``active=None`` (hysteresis band) changes nothing; the time it covers is observed."""
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="r", open_after_s=60, hold_across_gaps=True)
    assert _run(tr, [(0.0, True, False), (30.0, None, False), (60.0, True, False)]) == [(60.0, "open")]


def _dense(index: pd.DatetimeIndex, flag: np.ndarray, scored: np.ndarray,
           cfg: SimEvalConfig) -> list[Episode]:
    """Every scored tick observed: what the live scorer's tracker sees."""
    resumed = piece_starts(scored).copy()                                  # one per scored tick
    resumed[:1] = False
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="eval", open_after_s=cfg.open_after_s,
                        clear_after_s=cfg.clear_after_s, hold_across_gaps=cfg.hold_across_gaps)
    out = []
    for k, i in enumerate(np.flatnonzero(scored)):
        for e in tr.observe("m", index[i].to_pydatetime(), bool(flag[i]), 1.0, resumed=bool(resumed[k])):
            if e.state is EventState.RESOLVED:
                out.append(_episode(e))
    return out + [_episode(e) for e in tr.open_events()]


@pytest.mark.parametrize("hold", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_eval_sims_sparse_observation_equals_observing_every_scored_tick(hold: bool, seed: int) -> None:
    """``_episodes`` observes only the flag's changes, the resumptions and ``tracker.due``; it must
    make exactly the episodes a tracker observing every scored tick makes."""
    rng = np.random.default_rng(seed)
    n = 20000
    index = pd.date_range(T0, periods=n, freq="1s")
    flag = np.repeat(rng.random(n // 90 + 1) < 0.45, 90)[:n] ^ (rng.random(n) < 0.002)
    scored = np.repeat(rng.random(n // 150 + 1) < 0.75, 150)[:n]
    cfg = SimEvalConfig(open_after_s=120, clear_after_s=150, hold_across_gaps=hold)
    dense = _dense(index, flag, scored, cfg)
    assert len(dense) > 3                                                   # the case is not trivial
    assert _episodes(index, flag, cfg, scored) == dense


def test_a_tracker_pickled_before_the_gap_fields_existed_still_works() -> None:
    """The scoring service restores its trackers from snapshots; one written by the previous
    version has states with only ``pending_since``, ``clear_since`` and ``event``."""
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="r", open_after_s=120)
    _run(tr, [(0.0, True, False)])
    st = tr._keys["m"]
    old = _State.__new__(_State)
    old.__setstate__((None, {"pending_since": st.pending_since, "clear_since": None, "event": None}))
    tr._keys["m"] = pickle.loads(pickle.dumps(old))
    assert _run(tr, [(60.0, True, False), (120.0, True, False)]) == [(120.0, "open")]
