"""MQTT connector on a real Mosquitto, review 71: overlapping mapping filters deliver a publish once,
one-value-per-topic payloads configured in TOML, bad payloads logged and counted per mapping."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentCollector, AgentMetrics
from tests.edge_agent.test_mqtt_connector import Publisher, acme, brightline, drain, make_config
from tests.support.forwarding import NoUplink
from tests.support.servers import Mosquitto
from tests.support.sinks import running
from tests.support.waiting import eventually
from zhizao.model import AssetPath, Sample

OVERLAP = """
[[mappings]]
name = "specific"
topic = "ovl/+line/+machine/telemetry"
asset = "plant1/a1/{line}/{machine}"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
[[mappings]]
name = "catchall"
topic = "ovl/#rest"
asset = "plant1/a1/line8/other"
timestamp = { field = "ts", format = "epoch_ms" }
values = { layout = "flat", exclude = ["ts"] }
"""


def config(broker: Mosquitto, mappings_toml: str, protocol: str = "5") -> MqttConnectorConfig:
    doc: dict[str, Any] = tomllib.loads(mappings_toml)
    return MqttConnectorConfig.model_validate(
        {"host": broker.host, "port": broker.port, "protocol": protocol, **doc})


async def stored(conn: MqttConnector, buf: SqliteBuffer, pub: Publisher, sentinel: str) -> list[Sample]:
    """Everything stored once the sentinel (published last, on a topic only the catch-all
    matches) is: the broker delivers a session's messages in order, so every copy of what was
    published before it has arrived by then."""
    pub.publish(sentinel, orjson.dumps({"ts": 1795392009000, "end": 1}))
    got: list[Sample] = []

    async def has_end() -> bool:
        got.extend(await drain(buf))
        return any(s.signal == "end" for s in got)

    for _ in range(150):
        if await has_end():
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"the sentinel never came: {got}")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_overlapping_mapping_filters_store_a_publish_once(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    """``ovl/+/+/telemetry`` and ``ovl/#``: one publish is one message, mapped by the first
    matching mapping, stored once (the covered filter is not subscribed)."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    conn = MqttConnector(config(mosquitto, OVERLAP, protocol), "agent-1", dl)
    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
                running(conn, buf)):
        await asyncio.sleep(0.3)  # the SUBACK
        pub = Publisher(mosquitto)
        pub.publish("ovl/l1/m1/telemetry", orjson.dumps({"ts": 1795392000000, "temp": 21.5}))
        pub.publish("ovl/other", orjson.dumps({"ts": 1795392001000, "temp": 1.0}))
        got = await stored(conn, buf, pub, "ovl/zz")
        pub.close()
    assert [(s.asset, s.signal, s.value) for s in got] == [
        (AssetPath("plant1", "a1", "l1", "m1"), "temp", 21.5),
        (AssetPath("plant1", "a1", "line8", "other"), "temp", 1.0),
        (AssetPath("plant1", "a1", "line8", "other"), "end", 1),
    ]
    assert conn.stats.messages == 3 and conn.stats.samples_read == 3 and conn.stats.bad_payloads == 0


async def test_a_covered_filter_left_in_the_persistent_session_is_unsubscribed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An earlier version subscribed the persistent session to every mapping's filter; the
    broker keeps those subscriptions: the covered one is unsubscribed, a publish comes once."""
    cfg = config(mosquitto, OVERLAP)
    old = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agent-1-mqtt",
                      protocol=MQTTProtocolVersion.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    old.connect(mosquitto.host, mosquitto.port, clean_start=False, properties=props)
    old.loop_start()
    for flt in ("ovl/+/+/telemetry", "ovl/#"):
        old.subscribe(flt, qos=1)
    await asyncio.sleep(0.3)
    old.disconnect()
    old.loop_stop()
    conn = MqttConnector(cfg, "agent-1", DeadLetter(tmp_path / "dead.jsonl"))
    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
                running(conn, buf)):
        await asyncio.sleep(0.3)  # the UNSUBACK and SUBACK
        pub = Publisher(mosquitto)
        pub.publish("ovl/l1/m1/telemetry", orjson.dumps({"ts": 1795392000000, "temp": 21.5}))
        got = await stored(conn, buf, pub, "ovl/zz")
        pub.close()
    assert [s.signal for s in got] == ["temp", "end"] and conn.stats.messages == 2


SCALAR = """
[[mappings]]
name = "scalar"
topic = "sensors/+machine/+signal"
asset = "plant1/a1/line1/{machine}"
timestamp = { source = "receive" }
values = { layout = "value", signal = "{signal}" }
units = { temp = "degC" }
"""


async def test_one_value_per_topic_payloads_with_receive_time(tmp_path: Path, mosquitto: Mosquitto) -> None:
    conn = MqttConnector(config(mosquitto, SCALAR), "agent-1", DeadLetter(tmp_path / "dead.jsonl"))
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        async with running(conn, buf):
            await asyncio.sleep(0.3)
            pub = Publisher(mosquitto)
            for topic, body in [("sensors/m1/temp", b"23.5"), ("sensors/m1/door", b"true"),
                                ("sensors/m1/state", b"running"), ("sensors/m2/count", b"7")]:
                pub.publish(topic, body)
            pub.close()
            await eventually(lambda: conn.stats.samples_read == 4, 15)
        got = await drain(buf)
    assert [(s.asset.machine, s.signal, s.value, s.unit) for s in got] == [
        ("m1", "temp", 23.5, "degC"), ("m1", "door", True, None), ("m1", "state", "running", None),
        ("m2", "count", 7, None)]
    assert conn.stats.bad_payloads == 0


def bad_acme() -> bytes:  # one good signal, one without a value
    return orjson.dumps({"ts": 1795392000000, "metrics": {"ok": {"value": 1.0}, "bad": {"nope": 1}}})


async def test_bad_payloads_are_logged_and_counted_per_mapping(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken mapping's first error is logged although another mapping's was a moment ago; a
    partly mapped payload is not called "not mapped"; the counter has a mapping label."""
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.mqtt.connector")
    dl = DeadLetter(tmp_path / "dead.jsonl")
    conn = MqttConnector(make_config(mosquitto), "agent-1", dl)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        async with running(conn, buf):
            await asyncio.sleep(0.3)
            pub = Publisher(mosquitto)
            pub.publish("acme/line2/imm-3/telemetry", b"{garbage")
            pub.publish("acme/line2/imm-3/telemetry", b"{garbage again")  # same mapping, same kind
            pub.publish("brightline/plant1/asm-1/data", b"{garbage")
            pub.publish("acme/line2/imm-3/telemetry", bad_acme())
            pub.publish("acme/line2/imm-3/telemetry", acme(1))
            pub.publish("brightline/plant1/asm-1/data", brightline(1))
            pub.close()
            await eventually(lambda: conn.stats.samples_read == 3, 15)
        fwd = Forwarder(buf, NoUplink(), dl)
        text = AgentMetrics(AgentCollector(buf, fwd, [conn], dl, {"version": "test"})).render().decode()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "not mapped (mapping acme): payload is not valid JSON" in lines[0]
    assert "not mapped (mapping brightline): payload is not valid JSON" in lines[1]
    assert "partly mapped (mapping acme: 1 signals stored, these not): signal 'bad'" in lines[2]
    assert conn.stats.bad_payloads == 4 and conn.stats.bad_by_mapping == {"acme": 3, "brightline": 1}
    assert 'zhizao_agent_bad_payloads_total{connector="mqtt",mapping="acme"} 3.0' in text
    assert 'zhizao_agent_bad_payloads_total{connector="mqtt",mapping="brightline"} 1.0' in text
    assert [r["mapping"] for r in dl.read()] == ["acme", "acme", "brightline", "acme"]
