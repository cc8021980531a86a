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
