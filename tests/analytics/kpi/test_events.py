"""The shared event mechanism: debounce and lifecycle, and delivery to real sinks (Mosquitto,
an HTTP webhook receiver, ingest's /api/v1/events), plus KPI threshold rules feeding it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import numpy as np
import pytest

from analytics.events import EpisodeTracker, SinksConfig, ThresholdRule, build_emitter
from analytics.events.emitter import EventEmitter
from analytics.events.signature import verify_webhook_signature
from analytics.events.sinks.mqtt import MqttSink
from analytics.kpi import alerts as alerts_module
from analytics.kpi.alerts import KpiAlerter
from ingest.settings import Settings
from ingest.testing import run_server
from tests.analytics.test_training_live import ListSink
from tests.support.servers import Mosquitto
from tests.support.webhook import WebhookReceiver
from zhizao.errors import StoreUnavailable, Unavailable
from zhizao.events import Event, EventSource, EventState
from zhizao.topics import ALERTS_FILTER, alert_topic, event_topic
from zhizao.wire import parse_ts

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_debounce_open_update_resolve_with_one_id() -> None:
    tr = EpisodeTracker(source=EventSource.KPI, rule="oee_low", threshold=0.6, open_after_s=120,
                        clear_after_s=120, higher_is_worse=False)
    assert tr.observe("p/a/l/m", _at(0), True, 0.5) == []          # pending
    assert tr.observe("p/a/l/m", _at(1), False, 0.7) == []         # a blip: never opened
    assert tr.observe("p/a/l/m", _at(2), True, 0.5) == []
    (opened,) = tr.observe("p/a/l/m", _at(4), True, 0.55)
    assert opened.state is EventState.OPEN and opened.start == _at(2) and opened.peak == 0.55
    assert parse_ts(opened.details["raised_at"]) == _at(4)          # when the alarm went out
    (worse,) = tr.observe("p/a/l/m", _at(5), True, 0.4, details={"window": "w"})
    assert worse.id == opened.id and worse.peak == 0.4
    assert worse.details == {"window": "w", "raised_at": opened.details["raised_at"]}
    assert tr.observe("p/a/l/m", _at(6), True, 0.45) == []         # not worse: no message
    assert tr.observe("p/a/l/m", _at(7), None, 0.61) == []         # hysteresis band: no verdict
    assert tr.observe("p/a/l/m", _at(8), False, 0.7) == []         # clearing, debounced
    (done,) = tr.observe("p/a/l/m", _at(10), False, 0.72)
    assert done.id == opened.id and done.state is EventState.RESOLVED and done.end == _at(8)
    assert done.peak == 0.4 and tr.open_events() == []


def test_close_all_never_ends_an_episode_before_it_started() -> None:
    """A shutdown whose clock is behind the data (scoring catching up) resolves open episodes at
    their start at the latest: ingest refuses an event whose end is before its start."""
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="model-v1", threshold=0.5)
    (opened,) = tr.observe("p/a/l/m", _at(10), True, 0.9)
    (done,) = tr.close_all(_at(3))
    assert done.id == opened.id and done.state is EventState.RESOLVED and done.end == opened.start
    Event.model_validate(done.model_dump())  # as ingest parses it


def _report(oee: float, planned_s: float = 3600.0) -> dict[str, Any]:
    rec = {"machine": "p/a/l/m1", "oee": oee, "planned_time_s": planned_s, "data_quality": {"ok": True}}
    return {"windows": [{"start": "s", "end": "e", "machines": [rec], "lines": []}]}


def test_anomaly_debounce_default_is_one_value_everywhere(tmp_path: Path) -> None:
    """The scoring service, the one-box stack's scorer and eval sim default to the same debounce,
    so the false-alarm figures eval sim reports are those of an installation left at defaults."""
    from analytics.events import ANOMALY_CLEAR_AFTER_S, ANOMALY_HOLD_ACROSS_GAPS, ANOMALY_OPEN_AFTER_S
    from analytics.scoring import AnomalyModel, ModelSpec
    from analytics.scoring.live import MachineScorer
    from analytics.scoring.service.config import ServiceConfig
    from analytics.simline import SimEvalConfig

    default = (ANOMALY_OPEN_AFTER_S, ANOMALY_CLEAR_AFTER_S)
    assert default == (120.0, 300.0)
    svc = ServiceConfig.model_validate({"scopes": ["plant1/a1/line1"], "ingest": {"url": "http://127.0.0.1:1"}})
    assert (svc.open_after_s, svc.clear_after_s) == default
    sample = tomllib.loads((ROOT / "analytics/scoring/service/sample.toml").read_text())
    assert (sample["open_after_s"], sample["clear_after_s"]) == default  # the documented config says so too
    assert sample["hold_across_gaps"] is ANOMALY_HOLD_ACROSS_GAPS is svc.hold_across_gaps is False
    sim = SimEvalConfig()
    assert (sim.open_after_s, sim.clear_after_s) == default
    rows = np.array([[float(i % 7), float(i % 5)] for i in range(400)])
    model = AnomalyModel(spec=ModelSpec()).fit(rows, columns=["a", "b"])
    tracker = MachineScorer("plant1/a1/line1/m", model).tracker  # the one-box stack's scorer
    assert (tracker.open_after_s, tracker.clear_after_s) == default
    assert tracker.hold_across_gaps is sim.hold_across_gaps is ANOMALY_HOLD_ACROSS_GAPS


def test_kpi_rule_with_hysteresis_and_too_little_planned_time() -> None:
    rule = ThresholdRule(name="oee-low", kpi="oee", op="<", threshold=0.6, hysteresis=0.05)
    al = KpiAlerter([rule])
    (ev,) = al.observe_report(rule, _report(0.5), _at(0))
    assert ev.rule == "oee-low" and ev.asset == "p/a/l/m1" and ev.threshold == 0.6
    assert al.observe_report(rule, _report(0.62), _at(1)) == []      # inside the band
    assert al.observe_report(rule, _report(0.9, planned_s=60), _at(2)) == []   # break: no verdict
    (res,) = al.observe_report(rule, _report(0.7), _at(3))
    assert res.state is EventState.RESOLVED and res.id == ev.id


async def test_emitter_delivers_to_ingest_mqtt_and_webhook(tmp_path: Path, mosquitto: Mosquitto,
                                                          webhook: WebhookReceiver) -> None:
    settings = Settings.model_validate({"auth": {"enabled": False},
                                        "storage": {"duckdb": {"path": str(tmp_path / "i.duckdb")}}})
    tr = EpisodeTracker(source=EventSource.KPI, rule="idle-energy", threshold=0.3)
    opened = tr.observe("plant1/a1/line1/comp-1", _at(0), True, 0.42)
    resolved = tr.observe("plant1/a1/line1/comp-1", _at(30), False, 0.2)
    received: list[Event] = []

    async def listen(ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            await c.subscribe(ALERTS_FILTER, qos=1)
            ready.set()
            async for msg in c.messages:
                assert str(msg.topic) == "zhizao/v1/alerts/plant1/a1/line1/comp-1/kpi/idle-energy"
                received.append(Event.model_validate_json(bytes(msg.payload)))
                if len(received) == 2:
                    return

    with run_server(settings) as url:
        cfg = SinksConfig.model_validate({
            "ingest": {"url": url}, "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "retain": False},
            "webhooks": [{"url": webhook.url, "secret": "s3cret"}], "max_attempts": 2})
        ready = asyncio.Event()
        listener = asyncio.create_task(listen(ready))
        await asyncio.wait_for(ready.wait(), 10)
        async with build_emitter(cfg) as emitter:
            assert await emitter.emit(opened) == {"ingest": True, "mqtt": True, "webhook": True}
            assert await emitter.emit(resolved) == {"ingest": True, "mqtt": True, "webhook": True}
        await asyncio.wait_for(listener, 10)
        async with httpx.AsyncClient() as http:
            stored = (await http.get(f"{url}/api/v1/events", params={"asset": "plant1"})).json()["events"]
    assert [e.state for e in received] == [EventState.OPEN, EventState.RESOLVED]
    assert len(stored) == 1 and stored[0]["id"] == opened[0].id and stored[0]["state"] == "resolved"
    assert [d.json()["events"][0]["state"] for d in webhook.received] == ["open", "resolved"]
    for d in webhook.received:  # t=<unix s>,v1=<HMAC of "<t>.<body>">, checked as a receiver would
        assert verify_webhook_signature("s3cret", d.body, d.signature, now=d.received_at), d.signature


async def test_unreachable_sink_is_counted_and_others_still_deliver(webhook: WebhookReceiver) -> None:
    cfg = SinksConfig.model_validate({"ingest": {"url": "http://127.0.0.1:9", "timeout_s": 1},
                                      "webhooks": [{"url": webhook.url}], "max_attempts": 2})
    tr = EpisodeTracker(source=EventSource.ANOMALY, rule="model-v1")
    async with build_emitter(cfg) as emitter:
        result = await emitter.emit(tr.observe("p/a/l/m", _at(0), True, 0.9))
        assert result == {"ingest": False, "webhook": True}
        assert emitter.failed == {"ingest": 1}


# ---- the KPI alerter's rounds: per-rule failures, redelivery, restarts, the clock (review 48) -----

ASSET = "plant1/a1/line1/cnc-1"
OEE = ThresholdRule(name="oee-low", kpi="oee", op="<", threshold=0.6, scope="plant1", window_s=3600)
SCRAP = ThresholdRule(name="scrap-high", kpi="scrap_ratio", op=">", threshold=0.1, scope="plant1",
                      window_s=1800)


def _kpi_report(kpi: str, value: float, now: datetime, window_s: float) -> dict[str, Any]:
    rec = {"machine": ASSET, kpi: value, "planned_time_s": 3600.0, "producing": True,
           "data_quality": {"ok": True}}
    return {"windows": [{"start": (now - timedelta(seconds=window_s)).isoformat(), "end": now.isoformat(),
                         "machines": [rec], "lines": []}]}


class RecordingSink(ListSink):
    """A sink keeping what it got (``got``); down (``Unavailable``) for its first ``fail_first`` sends."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.fail_first, self.calls = fail_first, 0
        self.got = self.events

    async def send(self, events: Sequence[Event]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise Unavailable("sink down")
        await super().send(events)


async def _run_alerter(monkeypatch: pytest.MonkeyPatch, rounds: int, fail_scrap_in_round: int | None,
                       sink: RecordingSink, state_path: Path | None = None) -> list[datetime]:
    """Run ``KpiAlerter.run`` for ``rounds`` rounds on a fake KPI engine: OEE 0.4 (breached, the
    same value every round), scrap 0.01 (clear); the scrap rule's read fails in one round.
    Returns the window ends the engine was asked for."""
    stop = asyncio.Event()
    state = {"round": 0}
    ends: list[datetime] = []

    async def fake_report(store: Any, plant: Any, cfg: Any, scope: str, *, start: datetime, end: datetime,
                          group_by: Any) -> dict[str, Any]:
        ends.append(end)
        window_s = (end - start).total_seconds()
        if window_s == OEE.window_s:
            state["round"] += 1
            if state["round"] >= rounds:
                stop.set()
            return _kpi_report("oee", 0.4, end, window_s)
        if state["round"] == fail_scrap_in_round:
            raise StoreUnavailable("influxdb: timeout")
        return _kpi_report("scrap_ratio", 0.01, end, window_s)

    monkeypatch.setattr(alerts_module, "kpi_report", fake_report)
    alerter = KpiAlerter([OEE, SCRAP], state_path=state_path)
    async with EventEmitter([sink], max_attempts=1, backoff_initial_s=0.01) as emitter:
        await asyncio.wait_for(alerter.run(None, None, None, emitter, interval_s=0.01, stop=stop), 10)  # type: ignore[arg-type]
    return ends


async def test_kpi_alert_opened_in_a_round_whose_other_rule_failed_is_emitted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 1 opens oee-low, then the scrap rule's read fails: the OEE alert still goes out (rounds
    2-3 see the same value, no peak update: it would never be sent again)."""
    sink = RecordingSink()
    await _run_alerter(monkeypatch, rounds=3, fail_scrap_in_round=1, sink=sink)
    assert [e.rule for e in sink.got] == ["oee-low"], "the OEE alert was opened but never emitted"


async def test_kpi_alert_not_delivered_is_delivered_in_a_later_round(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = RecordingSink(fail_first=1)       # the sink is down for the first round only
    await _run_alerter(monkeypatch, rounds=3, fail_scrap_in_round=None, sink=sink)
    assert [e.rule for e in sink.got] == ["oee-low"], "an undelivered KPI alert is never retried"


async def test_kpi_alerter_drops_the_oldest_undelivered_updates_beyond_its_bound() -> None:
    alerter = KpiAlerter([OEE], max_pending_events=2)
    tr = EpisodeTracker(source=EventSource.KPI, rule="oee-low")
    events = [e for i in range(3) for e in tr.observe(f"plant1/a1/line1/m{i}", _at(i), True, 0.4)]
    async with EventEmitter([RecordingSink(fail_first=1)], max_attempts=1) as emitter:
        assert not await alerter.deliver(emitter, events)
        assert list(alerter.pending) == [e.id for e in events[1:]] and alerter.dropped == 1
        assert await alerter.deliver(emitter, [])
    assert alerter.pending == {}


async def test_kpi_alerter_evaluates_at_the_current_utc_time_whatever_the_local_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        ends = await _run_alerter(monkeypatch, rounds=1, fail_scrap_in_round=None, sink=RecordingSink())
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    skew = abs((ends[0] - datetime.now(UTC)).total_seconds())
    assert skew < 60, f"the KPI window ends {skew / 3600:.1f} h away from now (local time taken as UTC)"


async def test_kpi_alerter_restart_continues_the_open_episode(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """A restart of ``kpi --watch`` during a breach restores the trackers from the state file: the
    breach stays one episode (one id), raised once, and is not opened again."""
    state = tmp_path / "kpi-alerts.state"
    before, after = RecordingSink(), RecordingSink()
    await _run_alerter(monkeypatch, rounds=2, fail_scrap_in_round=None, sink=before, state_path=state)
    (opened,) = before.got
    await _run_alerter(monkeypatch, rounds=2, fail_scrap_in_round=None, sink=after, state_path=state)
    assert after.got == [], f"a second alert for the same breach: {opened.id}, then {after.got}"
    restored = KpiAlerter([OEE], state_path=state)
    assert [e.id for e in restored.trackers["oee-low"].open_events()] == [opened.id]
    (done,) = restored.observe_report(OEE, _kpi_report("oee", 0.9, _at(600), 3600), _at(600))
    assert done.id == opened.id and done.state is EventState.RESOLVED


async def test_kpi_alerter_state_keeps_pending_updates_and_resolves_removed_rules(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def oee_clear(*args: Any, start: datetime, end: datetime, **kw: Any) -> dict[str, Any]:
        return _kpi_report("oee", 0.9, end, (end - start).total_seconds())

    monkeypatch.setattr(alerts_module, "kpi_report", oee_clear)
    state = tmp_path / "kpi-alerts.state"
    alerter = KpiAlerter([OEE, SCRAP], state_path=state)
    (opened,) = alerter.observe_report(SCRAP, _kpi_report("scrap_ratio", 0.3, _at(0), 1800), _at(0))
    async with EventEmitter([RecordingSink(fail_first=1)], max_attempts=1) as emitter:
        assert not await alerter.deliver(emitter, [opened])
    alerter.save()
    restarted = KpiAlerter([OEE], state_path=state)      # scrap-high removed from the config
    assert list(restarted.pending) == [opened.id]
    sink = RecordingSink()
    async with EventEmitter([sink], max_attempts=1) as emitter:
        assert await restarted.deliver(emitter, await restarted.evaluate(None, None, None, _at(5)))  # type: ignore[arg-type]
    assert [(e.id, e.state) for e in sink.got] == [(opened.id, EventState.RESOLVED)]


def test_kpi_alerter_state_folder_is_checked_and_a_bad_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        KpiAlerter([OEE], state_path=tmp_path / "nowhere" / "kpi-alerts.state")
    bad = tmp_path / "kpi-alerts.state"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="unreadable"):
        KpiAlerter([OEE], state_path=bad)
    assert not (tmp_path / "nowhere").exists()


async def test_retained_alert_of_an_open_episode_survives_another_rules_resolve(mosquitto: Mosquitto) -> None:
    """Health and energy models (or a KPI rule) on one machine publish retained on their own
    topics (``alerts/<asset>/<source>/<rule>``): the energy episode's resolve does not replace the
    still-open health alarm, which a dashboard connecting afterwards still sees."""
    health = EpisodeTracker(source=EventSource.ANOMALY, rule="model-v0001")
    energy = EpisodeTracker(source=EventSource.ANOMALY, rule="energy-model-v0001")
    (h_open,) = health.observe(ASSET, T0, True, 0.8)
    (e_open,) = energy.observe(ASSET, T0, True, 0.7)
    (e_done,) = energy.observe(ASSET, T0 + timedelta(seconds=60), False, 0.1)
    async with EventEmitter([MqttSink("127.0.0.1", mosquitto.port)], max_attempts=1) as emitter:
        await emitter.emit([h_open, e_open])
        await emitter.emit([e_done])
    seen: dict[str, Event] = {}
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
        await c.subscribe(alert_topic(ASSET) + "/#", qos=1)

        async def collect() -> None:
            async for msg in c.messages:
                assert msg.retain
                seen[str(msg.topic)] = Event.model_validate_json(bytes(msg.payload))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), 1.5)
    retained = {t: (e.id, e.state) for t, e in seen.items()}
    assert retained == {event_topic(h_open): (h_open.id, EventState.OPEN),
                        event_topic(e_done): (e_done.id, EventState.RESOLVED)}
    assert event_topic(h_open) == f"zhizao/v1/alerts/{ASSET}/anomaly/model-v0001"
