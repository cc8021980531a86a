"""The shared event mechanism: debounce and lifecycle, and delivery to real sinks (Mosquitto,
an HTTP webhook receiver, ingest's /api/v1/events), plus KPI threshold rules feeding it."""

from __future__ import annotations

import asyncio
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import numpy as np

from analytics.events import EpisodeTracker, SinksConfig, ThresholdRule, build_emitter
from analytics.events.signature import verify_webhook_signature
from analytics.kpi.alerts import KpiAlerter
from ingest.settings import Settings
from ingest.testing import run_server
from tests.support.servers import Mosquitto
from tests.support.webhook import WebhookReceiver
from zhizao.events import Event, EventSource, EventState
from zhizao.topics import ALERTS_FILTER
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
                assert str(msg.topic) == "zhizao/v1/alerts/plant1/a1/line1/comp-1"
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
