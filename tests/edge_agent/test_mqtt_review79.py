"""MQTT connector on a real Mosquitto, review 79: a mapping for ``$`` topics (AWS IoT style) listed
before a catch-all ``#rest`` is subscribed to on its own — a filter starting with a wildcard matches
no topic starting with ``$`` (MQTT §4.7.2), so ``#`` alone never delivered them; and simulated data
stamped ahead of the wall clock is stored."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.mqtt import MqttConnector
from edge_agent.deadletter import DeadLetter
from tests.edge_agent.test_mapping_review79 import DOLLAR
from tests.edge_agent.test_mqtt_connector import Publisher
from tests.edge_agent.test_mqtt_review71 import config, stored
from tests.support.servers import Mosquitto
from tests.support.sinks import running
from tests.support.waiting import eventually
from zhizao.model import AssetPath


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_dollar_topic_mapping_next_to_a_catch_all_receives_its_messages(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    conn = MqttConnector(config(mosquitto, DOLLAR, protocol), "agent-1", DeadLetter(tmp_path / "dead.jsonl"))
    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
                running(conn, buf)):
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.3)  # the SUBACKs
        pub = Publisher(mosquitto)
        pub.publish("$aws/things/cnc-1/telemetry", orjson.dumps({"ts": 1795392000000, "temp": 1.5}))
        pub.publish("other/x", orjson.dumps({"ts": 1795392001000, "rpm": 7}))
        got = await stored(conn, buf, pub, "zz")
        pub.close()
    assert sorted((s.asset, s.signal, s.value) for s in got) == [
        (AssetPath("plant1", "a1", "line1", "cnc-1"), "temp", 1.5),
        (AssetPath("plant1", "a1", "line9", "other"), "end", 1),
        (AssetPath("plant1", "a1", "line9", "other"), "rpm", 7),
    ]
    assert conn.stats.messages == 3 and conn.stats.bad_payloads == 0
    assert conn.mapper.filters == ["#", "$aws/things/+/telemetry"]


async def test_simulated_data_ahead_of_the_wall_clock_is_stored(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A scenario stamped 25 h and a year ahead of the clock (a future start, ``--speed``): stored."""
    mappings = DOLLAR.replace('"$aws/things/+machine/telemetry"', '"sim/+machine/telemetry"')
    conn = MqttConnector(config(mosquitto, mappings), "agent-1", DeadLetter(tmp_path / "dead.jsonl"))
    now = datetime.fromtimestamp(int(time.time()), UTC)
    stamps = [now + timedelta(hours=25), now + timedelta(days=365)]
    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
                running(conn, buf)):
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.3)
        pub = Publisher(mosquitto)
        for ts in stamps:
            pub.publish("sim/imm-1/telemetry", orjson.dumps({"ts": int(ts.timestamp() * 1000), "temp": 2.0}))
        got = await stored(conn, buf, pub, "zz")
        pub.close()
    assert [s.ts for s in got if s.signal == "temp"] == stamps
    assert conn.stats.bad_payloads == 0
