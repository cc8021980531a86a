"""MachineScorer at stops: a return to running restarts the trailing windows (as training does)
and resumes the episode tracker (its debounce timers restart; an open episode stays open)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from analytics.scoring import AnomalyModel, piece_starts
from analytics.scoring.live import MachineScorer
from analytics.scoring.presets import machine_health
from zhizao.events import EventState

T0_US = int(datetime(2026, 11, 24, 8, 0, tzinfo=UTC).timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def model() -> AnomalyModel:
    rng = np.random.default_rng(3)
    X = np.c_[20 + rng.normal(0, 1, 4000), 5 + rng.normal(0, 0.2, 4000)]
    return AnomalyModel(spec=machine_health()).fit(X, columns=["temp", "vib"])


def _at(second: int) -> datetime:
    return datetime.fromtimestamp((T0_US + second * 1_000_000) / 1e6, tz=UTC)


def _line(n_run: int, n_stop: int, shift_after: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running ``n_run`` s, stopped ``n_stop`` s, running ``n_run`` s with temp ``shift_after`` higher."""
    rng = np.random.default_rng(5)
    n = 2 * n_run + n_stop
    X = np.c_[20 + rng.normal(0, 1, n), 5 + rng.normal(0, 0.2, n)]
    X[n_run + n_stop:, 0] += shift_after
    running = np.ones(n, dtype=bool)
    running[n_run:n_run + n_stop] = False
    return T0_US + np.arange(n, dtype=np.int64) * 1_000_000, X, running


def test_a_return_to_running_restarts_the_windows_as_training_does(model: AnomalyModel) -> None:
    ts, X, running = _line(400, 200, shift_after=1.5)
    expected = model.stream().push(X[running], resets=piece_starts(running)).score
    spanning = model.stream().push(X[running]).score  # windows across the stop: what it did before
    assert not np.allclose(expected, spanning)
    for cut in (len(ts), 400, 450, 600, 601):  # one call; a call boundary before, in and after the stop
        scorer = MachineScorer("m", model)
        a, _ = scorer.process(ts[:cut], X[:cut], running[:cut])
        if cut < len(ts):
            snap = scorer.snapshot()  # the state carries the last row's running across a restart
            scorer = MachineScorer("m", model)
            scorer.restore(snap)
        b, _ = scorer.process(ts[cut:], X[cut:], running[cut:])
        np.testing.assert_allclose(np.r_[a.value, b.value], expected, err_msg=f"cut at {cut}")


def test_an_episode_stays_open_across_stops_and_debounce_restarts_after_them(model: AnomalyModel) -> None:
    scorer = MachineScorer("m", model, open_after_s=60, clear_after_s=300)
    rng = np.random.default_rng(9)
    X = np.c_[20 + rng.normal(0, 1, 3000), 5 + rng.normal(0, 0.2, 3000)]
    X[100:400, 0] += 15  # a hot machine ...
    X[2001:2600, 0] += 15  # ... hot again after two stops
    running = np.ones(3000, dtype=bool)
    running[400:1400] = False  # a 1000-s stop
    running[1410:2000] = False  # back for 10 s, then stopped again for 590 s
    ts = T0_US + np.arange(3000, dtype=np.int64) * 1_000_000
    _, events = scorer.process(ts, X, running)
    assert len({e.id for e in events}) == 1, "one episode: neither stop resolved it, however long"
    (done,) = [e for e in events if e.state is EventState.RESOLVED]  # 400 s cool at the end
    assert done.end is not None
    assert _at(100) <= done.start <= _at(115) and _at(2600) <= done.end <= _at(2615)  # the model's vote

    short = MachineScorer("m", model, open_after_s=60, clear_after_s=300)
    Y = np.c_[20 + rng.normal(0, 1, 3000), 5 + rng.normal(0, 0.2, 3000)]
    Y[370:400, 0] += 15  # 30 s hot before a stop, 40 s after it: never 60 s observed
    Y[1400:1440, 0] += 15
    _, events = short.process(ts, Y, np.r_[np.ones(400, bool), np.zeros(1000, bool), np.ones(1600, bool)])
    assert not events


def test_holding_across_gaps_counts_the_hot_seconds_on_both_sides_of_a_stop(model: AnomalyModel) -> None:
    """``hold_across_gaps``: hot 30 s before a 1000-s stop and 50 s after it. The vote flags from
    about 7 s into each hot stretch and the model's 9 warm-up rows after the return are not judged,
    so a 60-s on-delay is met only by adding the two sides: the alarm goes out about 47 s after
    the return, for an episode that started before the stop. Restarting the on-delay, never."""
    rng = np.random.default_rng(9)
    Y = np.c_[20 + rng.normal(0, 1, 3000), 5 + rng.normal(0, 0.2, 3000)]
    Y[370:400, 0] += 15
    Y[1400:1450, 0] += 15
    ts = T0_US + np.arange(3000, dtype=np.int64) * 1_000_000
    running = np.r_[np.ones(400, bool), np.zeros(1000, bool), np.ones(1600, bool)]
    assert model.warmup_rows == 9
    for cuts in ([3000], [1403, 3000], [395, 1401, 1405, 1500, 3000]):  # the warm-up split over calls
        held = MachineScorer("m", model, open_after_s=60, clear_after_s=300, hold_across_gaps=True)
        events, a = [], 0
        for b in cuts:
            if a:
                snap = held.snapshot()
                held = MachineScorer("m", model, open_after_s=60, clear_after_s=300, hold_across_gaps=True)
                held.restore(snap)
            events += held.process(ts[a:b], Y[a:b], running[a:b])[1]
            a = b
        opened = events[0]
        assert opened.state is EventState.OPEN and _at(370) <= opened.start <= _at(380), cuts
        assert _at(1440) <= datetime.fromisoformat(opened.details["raised_at"]) <= _at(1455), cuts
    restarting = MachineScorer("m", model, open_after_s=60, clear_after_s=300)
    assert not restarting.process(ts, Y, running)[1]


def test_a_restored_snapshot_keeps_its_episodes_but_takes_the_scorers_settings(model: AnomalyModel) -> None:
    """The delays are configuration: a service restarted with new ones applies them to the state
    it restores (the snapshot's own settings are not resurrected)."""
    ts, X, running = _line(400, 0, shift_after=15.0)
    old = MachineScorer("m", model, open_after_s=30, clear_after_s=300)
    _, events = old.process(ts[:430], X[:430], running[:430])
    assert not events  # hot from 400 s: 30 s not yet held at 429 s
    new = MachineScorer("m", model, open_after_s=200, clear_after_s=60, hold_across_gaps=True)
    new.restore(old.snapshot())
    settings = (new.tracker.open_after_s, new.tracker.clear_after_s, new.tracker.hold_across_gaps)
    assert settings == (200, 60, True)
    _, events = new.process(ts[430:], X[430:], running[430:])
    opened = events[0]
    assert _at(400) <= opened.start <= _at(410)  # the pending episode carried over ...
    raised = datetime.fromisoformat(opened.details["raised_at"])
    assert _at(600) <= raised <= _at(612)  # ... with the new delay
