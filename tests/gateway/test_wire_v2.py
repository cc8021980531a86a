"""Wire-format version 2 through the gateway: agents publish v2, the gateway stores it as v2 records
and forwards them as they are (or as v1 to an ingest limited to v1), ingest stores each batch once."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.http import HttpUplink, HttpUplinkConfig
from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from gateway.testing import duckdb_counts, simulated_batches
from gateway.wirecheck import BatchChecker
from tests.edge_agent.test_mqtt_uplink import Listener
from tests.gateway.conftest import GatewayFactory, Ingest, wait_for
from tests.support.servers import Mosquitto
from zhizao import topics, wire
from zhizao.model import Batch

# --- forwarding records -----------------------------------------------------------------------------


def _records() -> list[EncodedBatch]:
    """Two agent batches as the gateway stores them: one sent as v1, one as v2."""
    first, second = simulated_batches(40, n_agents=1)["agent-0"][:2]
    checker = BatchChecker()
    out = []
    for batch, version in ((first, 1), (second, 2)):
        grouped = Batch(batch.producer, batch.batch_id, batch.seq, wire.group_by_series(batch.samples))
        record = checker.check(wire.encode_batch(grouped, version=version)).record
        assert record is not None
        out.append(record)
    return out


class _Ingest:
    """An ``httpx`` transport answering like ingest (every batch stored) and keeping the bodies."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = wire.decompress(request.content)
        self.bodies.append((request.url.path, body))
        docs = [orjson.loads(line) for line in body.split(b"\n")]
        results = [{"line": i, "producer": d["producer"], "batch_id": d["batch_id"], "seq": d["seq"],
                    "accepted": 1, "rejected": [], "duplicate": False, "error": None}
                   for i, d in enumerate(docs)]
        if request.url.path.endswith("/bulk"):
            return httpx.Response(200, json={"batches": results, "accepted": 2, "duplicates": 0, "errors": 0})
        return httpx.Response(200, json=results[0])


@pytest.mark.parametrize("bulk", [True, False])
async def test_v2_records_are_forwarded_as_they_are(bulk: bool) -> None:
    """Each record's document is one line of the NDJSON bulk body (or one body), in its version."""
    records = _records()
    receiver = _Ingest()
    cfg = HttpUplinkConfig(url="http://ingest.test", bulk=bulk)
    async with HttpUplink(cfg, transport=httpx.MockTransport(receiver)) as up:
        outcomes = await up.send_bulk(records)
    assert outcomes == [None, None]
    sent = [line for _, body in receiver.bodies for line in body.split(b"\n")]
    assert sent == [r.document for r in records]
    assert [orjson.loads(line)["version"] for line in sent] == [1, 2]


@pytest.mark.parametrize("bulk", [True, False])
async def test_an_ingest_limited_to_v1_gets_the_same_samples_as_v1(bulk: bool) -> None:
    """``[uplink.http] wire_version = 1``: a v2 record goes as the v1 document of the same samples
    in the same order (indices in ingest's answer keep naming the record's samples)."""
    records = _records()
    receiver = _Ingest()
    cfg = HttpUplinkConfig(url="http://ingest.test", bulk=bulk, wire_version=1)
    async with HttpUplink(cfg, transport=httpx.MockTransport(receiver)) as up:
        outcomes = await up.send_bulk(records)
    assert outcomes == [None, None]
    sent = [line for _, body in receiver.bodies for line in body.split(b"\n")]
    assert [orjson.loads(line)["version"] for line in sent] == [1, 1]
    assert sent[0] == records[0].document, "a v1 record goes as it is"
    assert [wire.decode_batch(line) for line in sent] == [r.decode() for r in records]
    assert orjson.loads(sent[1])["samples"] == records[1].samples_json()


def test_a_damaged_v2_record_is_sent_as_it_is_for_ingest_to_refuse() -> None:
    broken = EncodedBatch.record("agent-1", "b-1", 1, 2, b'{"format":"zhizao.batch","version":2,'
                                 b'"producer":"agent-1","batch_id":"b-1","seq":1,"series":[{"ts":[1]}]}')
    assert broken.line(1) == broken.line(2) == broken.document


# --- end to end: agent (MQTT uplink, v2) → Mosquitto → gateway → ingest -----------------------------


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found is not None, name
    return float(found.group(1))


def _republish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    """Publish ``messages`` again, QoS 1, as an agent republishing batches whose PUBACK it missed."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-republish",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


async def _until(predicate: Callable[[], bool], limit: float, what: str) -> None:
    await asyncio.to_thread(wait_for, predicate, limit, what)


async def test_an_agent_publishing_v2_through_the_gateway_is_stored_once(
    mosquitto: Mosquitto, ingest: Ingest, gateway_factory: GatewayFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's MQTT uplink sends v2 (the default); the gateway takes it on its fast path, stores
    it as v2 records and forwards v2 lines to ingest's bulk endpoint. Every batch published twice
    (a republish), and a v2 batch with an invalid sample published twice (the slow path: its
    valid samples re-encoded as v2 under the same identity, twice the same record): ingest holds
    every valid sample exactly once."""
    lines: list[dict[str, Any]] = []
    assert ingest._app is not None
    service = ingest._app.state.service
    bulk = service.ingest_bulk

    async def spy(body: bytes, *rest: Any) -> Any:  # ingest's own thread and loop: list.append is enough
        lines.extend(orjson.loads(line) for line in wire.decompress(body, max_bytes=2**30).split(b"\n")
                     if line.strip())
        return await bulk(body, *rest)  # rest: the token's record

    monkeypatch.setattr(service, "ingest_bulk", spy)
    gw = gateway_factory()
    listener = Listener(mosquitto)
    await asyncio.sleep(0.3)  # the listener's subscription is in place
    samples = [s for b in simulated_batches(120, n_agents=1)["agent-0"] for s in b.samples]
    cfg = MqttUplinkConfig(host=mosquitto.host, port=mosquitto.port, linger_s=0.2, timeout_s=5)
    assert cfg.wire_version == 2
    async with (SqliteBuffer(tmp_path / "agent.sqlite", "agent-v2", synchronous="normal") as buffer,
                MqttUplink(cfg, "agent-v2", lambda: {"backlog": 0}) as uplink):
        forwarder = Forwarder(buffer, uplink, DeadLetter(tmp_path / "agent-dl.jsonl"), max_items=2000,
                              linger=0.2)
        task = asyncio.create_task(forwarder.run())
        try:
            await buffer.put(samples)
            await _until(lambda: ingest.written() >= len(samples), 60, "every sample in ingest")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    with listener.lock:
        published = [(t, p) for t, p, _ in listener.messages if not t.endswith("/status")]
    listener.close()
    docs = [orjson.loads(p) for _, p in published]
    assert docs and all(d["version"] == 2 for d in docs), "the agent sent v2 (many samples per series)"

    # a v2 batch of another agent with one invalid sample, published twice
    first = simulated_batches(30, n_agents=1, seed=11)["agent-0"][0]  # a day later: rows of their own
    extra = Batch("agent-x", "bx-1", 1, tuple(replace(s, ts=s.ts + timedelta(days=1)) for s in first.samples))
    bad = wire.batch_to_dict_v2(Batch("agent-x", "bx-1", 1, wire.group_by_series(extra.samples)))
    broken = copy.deepcopy(bad)
    broken["series"][0]["ts"][1] = "yesterday"
    payload = orjson.dumps(broken)
    _republish(mosquitto, [*published, (topics.data_topic(extra.samples[0].asset), payload),
                           (topics.data_topic(extra.samples[0].asset), payload)])
    expected = len(samples) + len(extra) - 1

    def checked() -> tuple[float, float]:
        text = gw.get("/metrics").text
        return (_metric(text, 'zhizao_gateway_checked_batches_total{path="fast"}'),
                _metric(text, 'zhizao_gateway_checked_batches_total{path="slow"}'))

    await _until(lambda: checked() == (2 * len(published), 2), 30, "every copy checked by the gateway")
    assert _metric(gw.get("/metrics").text, "zhizao_gateway_checked_v2_batches_total") == 2 * len(published)
    await _until(lambda: gw.health()["backlog_samples"] == 0, 30, "an empty gateway buffer")
    await _until(lambda: ingest.written() >= expected, 30, "the valid samples of agent-x in ingest")
    agent_lines = [line for line in lines if line["producer"] in ("agent-v2", "agent-x")]
    assert agent_lines and all(line["version"] == 2 for line in agent_lines), "forwarded as v2"
    ids = [(line["producer"], line["batch_id"]) for line in agent_lines]
    assert set(ids) == {*((d["producer"], d["batch_id"]) for d in docs), ("agent-x", "bx-1")}
    forwarded_x = [line for line in agent_lines if line["producer"] == "agent-x"]
    assert len(forwarded_x) == 2 and forwarded_x[0] == forwarded_x[1], "both copies, the same record"
    assert wire.decode_batch(orjson.dumps(forwarded_x[0])).samples == tuple(
        s for i, s in enumerate(wire.group_by_series(extra.samples)) if i != 1)
    assert gw.stop() == 0
    ingest.stop()
    assert duckdb_counts(ingest.db_path) == (expected, expected), "every valid sample stored once"
    dead = [orjson.loads(line) for line in (tmp_path / "gw-1-deadletter.jsonl").read_bytes().splitlines()]
    assert [(d["kind"], d["index"], d.get("place")) for d in dead] == [
        ("gateway_sample", 1, "series[0].ts[1]")] * 2


def test_the_bench_counter_counts_samples_of_both_versions() -> None:
    from gateway.mqtt.testing import count_samples
    from zhizao import wire

    batches = simulated_batches(20, n_agents=1)["agent-0"]
    for b in batches:
        assert count_samples(wire.encode_batch(b, version=1)) == len(b)
        assert count_samples(wire.encode_batch(b, version=2)) == len(b)
