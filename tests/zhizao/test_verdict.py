"""``zhizao check``'s comparison with the ground truth, on plain data (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.events import EpisodeTracker
from zhizao.events import EventSource
from zhizao.stack.expectations import load_play
from zhizao.stack.verdict import detections
from zhizao.wire import format_ts

CI = Path(__file__).resolve().parents[1] / "e2e" / "scenarios" / "ci.yaml"
T0 = datetime(2026, 11, 23, 0, 4, tzinfo=UTC)
CNC = "plant1/a1/line1/cnc-1"


def test_detection_counts_until_the_alarm_went_out() -> None:
    """A fault is detected when its episode's alarm went out (``raised_at``: the tracker's on-delay
    after the episode's start), not when the condition first held."""
    scenario, _ = load_play(CI)
    tracker = EpisodeTracker(source=EventSource.ANOMALY, rule="anomaly", open_after_s=120.0)
    events = []
    for s in range(0, 400, 10):  # flagged from 60 s after the fault began
        events += tracker.observe(CNC, T0 + timedelta(seconds=s), s >= 60, 0.9)
    ledger = [{"type": "fault", "machine": "line1/cnc-1", "kind": "bearing_wear",
               "start": format_ts(T0), "end": format_ts(T0 + timedelta(seconds=900))}]
    (found,), false_alarms = detections(scenario, ledger, events, {})
    assert events[0].start == T0 + timedelta(seconds=60)
    assert found.ttd_s == 180.0 and found.by == f"anomaly event {events[0].id}"  # 60 s + the 120-s on-delay
    assert false_alarms == []
    older = events[0].model_copy(update={"details": {}})                # an event that does not say
    (found,), _ = detections(scenario, ledger, [older], {})
    assert found.ttd_s == 60.0
