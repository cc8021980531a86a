"""MQTT uplink on a real Mosquitto: per-machine wire-format batches, stable part ids, birth and last will."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig, split_by_asset
from tests.edge_agent.test_buffer import samples
from tests.support.servers import Mosquitto
from zhizao import topics, wire
from zhizao.model import AssetPath, Batch, Sample

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
