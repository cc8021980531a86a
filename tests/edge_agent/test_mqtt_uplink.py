"""MQTT uplink on a real Mosquitto: per-machine wire-format batches, stable part ids, birth and last will."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from edge_agent.buffer import SqliteBuffer
from edge_agent.buffer.encoded import MIN_SERIES_RUN, v2_pays
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig, encode_part, split_by_asset
from tests.edge_agent.test_buffer import ASSET, T0, samples
from tests.support.forwarding import drain
from tests.support.servers import Mosquitto
from tests.support.waiting import eventually
from zhizao import topics, wire
from zhizao.model import AssetPath, Batch, Quality, Sample

OTHER = AssetPath("plant1", "a1", "line2", "asm-1")


class Listener:
    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="site-gw")
        self.client.on_message = self._on
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(topics.DATA_FILTER, 1), (topics.STATUS_FILTER, 1)])
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_split_by_asset_is_stable() -> None:
    mixed = [*samples(3), Sample(OTHER, "power_kw", samples(1)[0].ts, 1.0, "kW")]
    b = Batch("agent-1", "abc-0000000007", 7, tuple(reversed(mixed)))
    parts = split_by_asset(b)
    assert [p.batch_id for p in parts] == ["abc-0000000007.0", "abc-0000000007.1"]
    assert [len(p) for p in parts] == [3, 1] and split_by_asset(b) == parts


async def test_batches_and_status_on_the_site_broker(tmp_path: Path, mosquitto: Mosquitto) -> None:
    listener = Listener(mosquitto)
    cfg = MqttUplinkConfig(host=mosquitto.host, port=mosquitto.port, status_interval_s=0.2)
    data = [*samples(50), *(Sample(OTHER, "power_kw", s.ts, s.value, "kW") for s in samples(20))]
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf:
        async with MqttUplink(cfg, "agent-1", lambda: {"backlog": buf.stats.backlog_samples}) as up:
            fwd = Forwarder(buf, up, DeadLetter(tmp_path / "dead.jsonl"), max_items=1000, linger=0.05)
            await buf.put(data)
            task = asyncio.create_task(fwd.run())
            for _ in range(100):
                if buf.stats.backlog_samples == 0:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.3)
    listener.close()
    data_msgs = [(t, p) for t, p, _ in listener.messages if not t.endswith("/status")]
    got = [wire.decode_batch(p) for _, p in data_msgs]
    assert {t for t, _ in data_msgs} == {topics.data_topic(samples(1)[0].asset), topics.data_topic(OTHER)}
    assert sorted(len(b) for b in got) == [20, 50] and {b.producer for b in got} == {"agent-1"}
    assert all(b.batch_id.endswith((".0", ".1")) for b in got)
    status = [orjson.loads(p) for t, p, _ in listener.messages if t == topics.status_topic("agent-1")]
    assert status[0]["status"] == "online" and status[-1]["status"] == "offline"
    assert "backlog" in status[0]
    assert not up.refused and up.status_refused is None  # every status PUBACK checked: all taken


def test_every_mqtt_client_config_shares_the_broker_checks() -> None:
    """The uplink, the connector and the gateway validate broker settings alike (one base model)."""
    import tomllib

    import pytest
    from pydantic import ValidationError

    from edge_agent.connectors.mqtt import MqttConnectorConfig
    from gateway.config import BrokerConfig

    sample = Path(__file__).resolve().parents[2] / "edge_agent/connectors/mqtt/acme.toml"
    mapping = tomllib.loads(sample.read_text())["connectors"]["mappings"][0]
    for model, extra in ((MqttUplinkConfig, {}), (MqttConnectorConfig, {"mappings": [mapping]}),
                         (BrokerConfig, {})):
        with pytest.raises(ValidationError, match="password given without username"):
            model.model_validate({"host": "broker", "password": "x", **extra})
        with pytest.raises(ValidationError, match="keepalive_s"):
            model.model_validate({"host": "broker", "keepalive_s": 1, **extra})


def _polled(ticks: int, signals: int = 4, asset: AssetPath = ASSET) -> list[Sample]:
    """What a poll gives: every signal at each tick (series interleaved), two qualities for one."""
    return [Sample(asset, f"s{k}", T0 + timedelta(seconds=t), float(t * k), "kW" if k else None,
                   Quality.UNCERTAIN if (k == 1 and t % 3 == 0) else Quality.GOOD)
            for t in range(ticks) for k in range(signals)]


def test_encode_part_sends_version_2_where_it_pays_by_the_http_uplinks_rule() -> None:
    enough = Batch("agent-1", "b-1.0", 1, tuple(_polled(12)))  # 5 series (s1 has two qualities)
    few = Batch("agent-1", "b-2.0", 2, tuple(_polled(MIN_SERIES_RUN - 1, signals=6)))
    assert v2_pays(len(enough), 5) and not v2_pays(len(few), 6)
    doc = orjson.loads(encode_part(enough))
    assert doc["version"] == 2 and len(doc["series"]) == 5, "a series' samples grouped: one entry each"
    assert wire.decode_batch(encode_part(enough)).samples == wire.group_by_series(enough.samples)
    assert encode_part(enough) == encode_part(enough), "the same batch, the same bytes (resends)"
    assert gzip.decompress(encode_part(enough, compress=True)) == encode_part(enough)
    for v1 in (encode_part(few), encode_part(enough, version=1)):
        assert orjson.loads(v1)["version"] == 1
    assert wire.decode_batch(encode_part(few)) == few, "version 1 keeps the batch's order"
    assert wire.decode_batch(encode_part(enough, version=1)) == enough
    with pytest.raises(ValueError, match="unknown wire-format version 3"):
        encode_part(enough, version=3)
    assert MqttUplinkConfig(host="broker").wire_version == 2
    with pytest.raises(ValidationError, match="wire_version"):
        MqttUplinkConfig.model_validate({"host": "broker", "wire_version": 3})


async def _published(tmp_path: Path, broker: Mosquitto, data: list[Sample],
                     version: int) -> list[tuple[str, bytes]]:
    """The data messages ``(topic, payload)`` an agent with ``wire_version = version`` publishes
    for ``data`` (buffer → forwarder → MQTT uplink → broker → a subscriber)."""
    listener = Listener(broker)
    await asyncio.sleep(0.3)  # the subscription is in place
    cfg = MqttUplinkConfig(host=broker.host, port=broker.port, wire_version=version)
    async with (SqliteBuffer(tmp_path / f"b{version}.sqlite", "agent-1") as buf,
                MqttUplink(cfg, "agent-1", lambda: {}) as up):
        fwd = Forwarder(buf, up, DeadLetter(tmp_path / "dead.jsonl"), max_items=1000, linger=0.05)
        await buf.put(data)
        await drain(fwd, buf, 10)

    def data_messages() -> list[tuple[str, bytes]]:
        with listener.lock:
            return sorted((t, p) for t, p, _ in listener.messages if not t.endswith("/status"))

    await eventually(lambda: len(data_messages()) >= 2, 5, "both parts received")
    listener.close()
    return data_messages()


async def test_the_uplink_publishes_version_2_where_it_pays(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Through the buffer and the forwarder (samples come back as polled, series interleaved): the
    machine with many samples per series goes as v2, the one with few as v1; ``wire_version = 1``
    sends v1 only. Either way every sample arrives, under the same part ids."""
    data = [*_polled(20), *_polled(2, signals=8, asset=OTHER)]
    got = {version: await _published(tmp_path, mosquitto, data, version) for version in (2, 1)}
    versions = {v: {t: orjson.loads(p)["version"] for t, p in msgs} for v, msgs in got.items()}
    assert versions[2] == {topics.data_topic(ASSET): 2, topics.data_topic(OTHER): 1}
    assert versions[1] == {topics.data_topic(ASSET): 1, topics.data_topic(OTHER): 1}
    for msgs in got.values():
        batches = [wire.decode_batch(p) for _, p in msgs]
        assert len(batches) == 2 and sorted(b.batch_id.rsplit(".", 1)[1] for b in batches) == ["0", "1"]
        assert Counter(s for b in batches for s in b.samples) == Counter(data)
