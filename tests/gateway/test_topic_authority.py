"""The topic is authoritative (security review H2, gateway side) and alerts are not data (L1).

Real Mosquitto, a gateway subprocess and a real ingest: a batch published on one machine's data
topic that holds samples of another machine is dead-lettered whole and counted, nothing of it
stored; a site's alert event (``zhizao/v1/alerts/<site>/<source>/<rule>``, which matches the data
filter ``zhizao/v1/+/+/+/+``) is only acknowledged — not dead-lettered as a bad batch; a batch of a
site named ``alerts`` is refused saying the name is reserved.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from analytics.events.sinks.mqtt import MqttSink
from gateway.mqtt.testing import FakeAgent
from gateway.testing import duckdb_counts, simulated_batches
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto
from zhizao import topics
from zhizao.events import Event, EventSource
from zhizao.model import AssetPath, Batch, Sample

CNC1 = "plant1/a1/line1/cnc-1"


def _metric(text: str, name: str) -> float:
    """The value of metric ``name`` (with its labels) in a Prometheus text; 0 when absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return 0.0 if found is None else float(found.group(1))


def _stored(ingest: Ingest, asset: str) -> int:
    r = httpx.get(f"{ingest.url}/api/v1/series", timeout=10, params={
        "asset": asset, "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"})
    r.raise_for_status()
    return sum(len(s["values"]) for s in r.json()["series"])


def _deadletters(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_topic_names_the_machine_and_alerts_are_not_data(
    tmp_path: Path, mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory
) -> None:
    gw = gateway_factory()
    dead = tmp_path / "gw-1-deadletter.jsonl"
    batches = simulated_batches(30, n_agents=1)["agent-0"]
    good = [b for b in batches if str(b.samples[0].asset) == CNC1][:2]
    victim = next(b for b in batches if str(b.samples[0].asset) != CNC1)
    assert good and all(len({s.asset for s in b.samples}) == 1 for b in good)
    # a forged batch: cnc-2's samples (false values) hidden behind one sample of cnc-1, so the agent
    # helper publishes it on cnc-1's topic; and a batch of a site named "alerts"
    forged = Batch("agent-0", "b7f3-9999999999", 9999, (good[0].samples[0], *(
        Sample(s.asset, s.signal, s.ts, -1.0 if isinstance(s.value, float) else s.value, s.unit)
        for s in victim.samples)))
    reserved = AssetPath("alerts", "a1", "line1", "m1")
    alerts_site = Batch("agent-0", "b7f3-9999999998", 9998,
                        (Sample(reserved, "power_kw", good[0].samples[0].ts, 1.0, "kW"),))
    agent = FakeAgent(mosquitto.host, mosquitto.port, "agent-0", "plant")
    agent.connect()
    try:
        agent.publish([good[0], forged, alerts_site])
        # an alert of a site, as the KPI alerter / scoring service publish it (retained, QoS 1)
        event = Event(id="oee-low-1", source=EventSource.KPI, rule="oee_low", asset="plant1",
                      start=datetime.now(UTC))
        assert re.fullmatch(topics.DATA_FILTER.replace("+", "[^/]+"), topics.event_topic(event))

        async def alert() -> None:
            async with MqttSink(mosquitto.host, mosquitto.port) as sink:
                await sink.send([event])

        asyncio.run(alert())
        agent.publish([good[1]])
        expected = sum(len(b) for b in good)
        wait_for(lambda: _stored(ingest, CNC1) >= expected, 60, f"{expected} samples in ingest")
        wait_for(lambda: len(_deadletters(dead)) >= 2, 30, "two dead-lettered messages")
        alerts = 'zhizao_gateway_messages_total{kind="alert_skipped"}'
        wait_for(lambda: _metric(gw.get("/metrics").text, alerts) >= 1, 30, "the alert acknowledged")
    finally:
        agent.disconnect()
    lines = _deadletters(dead)
    assert [line["topic"] for line in lines] == [topics.data_topic(good[0].samples[0].asset),
                                                topics.data_topic(reserved)], lines
    wrong, site = lines
    assert wrong["kind"] == "gateway_batch" and wrong["producer"] == "agent-0"
    assert wrong["batch_id"] == "b7f3-9999999999"
    assert f"holds samples of asset {victim.samples[0].asset}, not of its topic's asset " \
        f"{CNC1}: the topic is authoritative" in str(wrong["reason"])
    assert "no site may be named 'alerts'" in str(site["reason"])
    metrics = gw.get("/metrics").text
    assert _metric(metrics, "zhizao_gateway_wrong_asset_batches_total") == 1
    assert _metric(metrics, "zhizao_gateway_bad_payloads_total") == 2  # the alert is not one
    assert _metric(metrics, alerts) == 1
    wait_for(lambda: gw.health()["backlog_samples"] == 0, 30, "an empty gateway buffer")
    assert gw.stop() == 0
    assert _stored(ingest, CNC1) == expected
    assert _stored(ingest, str(victim.samples[0].asset)) == 0
    ingest.stop()
    # only the two good batches (fleet samples of the agent's status aside)
    assert duckdb_counts(ingest.db_path) == (expected, expected)
