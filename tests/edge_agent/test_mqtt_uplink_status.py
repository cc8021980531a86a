"""MQTT uplink status messages against a real Mosquitto whose ACL denies only the status topic
(``zhizao/v1/agents/<id>/status``): the refused status (MQTT 5 PUBACK 0x87 Not authorized) is one
WARNING naming the topic, the reason and the ACL line — once per change of state, not every
``status_interval_s`` — and counted (``refused["status: Not authorized"]``, exported as
``zhizao_agent_uplink_refused_total{reason="status: Not authorized"}``); the data goes on
untouched. Before, nothing was said and the gateway's fleet view just lost the agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentCollector, AgentMetrics
from edge_agent.uplinks.mqtt import MqttUplink, MqttUplinkConfig
from tests.edge_agent.test_buffer import ASSET, samples
from tests.support.acl_broker import Subscriber, acl_broker
from tests.support.servers import Mosquitto
from tests.support.waiting import eventually
from zhizao import topics, wire
from zhizao.backoff import Backoff

LOGGER = "edge_agent.uplinks.mqtt.uplink"
STATUS = topics.status_topic("agent-1")  # zhizao/v1/agents/agent-1/status
DATA = topics.data_topic(ASSET)
ACL_DATA_ONLY = (
    "user agent\n"
    "topic write zhizao/v1/plant1/#\n"
    "user gw\n"
    "topic read zhizao/#\n"
)
ACL_WITH_STATUS = ACL_DATA_ONLY.replace("user gw\n", "topic write zhizao/v1/agents/#\nuser gw\n")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """Users ``agent`` and ``gw``; the ACL lets the agent write its data but not its status."""
    with acl_broker(tmp_path, ACL_DATA_ONLY) as b:
        yield b


def fleet_view(broker: Mosquitto) -> Subscriber:
    """The gateway's subscriber: data and status topics."""
    return Subscriber(broker, [topics.DATA_FILTER, topics.STATUS_FILTER])


def _metric(text: str, name: str) -> float:
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")), -1.0)


async def test_a_status_topic_the_acl_denies_is_one_warning_per_change_and_data_goes_on(
    tmp_path: Path, broker: tuple[Mosquitto, Path], caplog: pytest.LogCaptureFixture
) -> None:
    server, acl = broker
    fleet = fleet_view(server)
    await eventually(fleet.client.is_connected, 10, "the gateway's subscriber")
    await asyncio.sleep(0.2)  # its SUBSCRIBE is through
    cfg = MqttUplinkConfig(host=server.host, port=server.port, username="agent", password="agent-secret",
                           status_interval_s=0.1, timeout_s=5.0)
    caplog.set_level(logging.INFO, logger=LOGGER)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]

    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf,
                MqttUplink(cfg, "agent-1", lambda: {"backlog": buf.stats.backlog_samples}) as up):
        dead = DeadLetter(tmp_path / "dead.jsonl")
        fwd = Forwarder(buf, up, dead, max_items=1000, linger=0.05, backoff=Backoff(initial=0.1, cap=0.3))
        metrics = AgentMetrics(AgentCollector(buf, fwd, [], dead, {"version": "test"}))
        task = asyncio.create_task(fwd.run())
        try:
            # the birth and several refreshes refused: counted each, said once
            await eventually(lambda: up.refused["status: Not authorized"] >= 5, 15, "refused status messages")
            (warning,) = warnings()
            assert f"broker refused the status message on {STATUS}: Not authorized" in warning
            assert "check the broker's ACL for this agent (user agent)" in warning
            assert f"topic write {STATUS}" in warning and "fleet view" in warning
            assert up.status_refused == "Not authorized"
            text = metrics.render().decode()
            assert _metric(text, 'zhizao_agent_uplink_refused_total{reason="status: Not authorized"}') >= 5

            # data is not affected: delivered once, acked, nothing refused, uplink up
            await buf.put(samples(30))
            await eventually(lambda: buf.stats.backlog_samples == 0, 15, "the batch delivered")
            await eventually(lambda: bool(fleet.on(DATA)), 10, "the data at the gateway")
            assert fwd.stats.sent_samples == 30 and fwd.stats.retries == 0 and not dead.counts
            assert set(up.refused) == {"status: Not authorized"}
            text = metrics.render().decode()
            assert _metric(text, "zhizao_agent_uplink_up") == 1.0
            assert not fleet.on(STATUS)  # what the gateway's fleet view sees: nothing
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

            # the ACL fixed: the status arrives, said once at INFO, no further warning
            acl.write_text(ACL_WITH_STATUS)
            server.restart()
            await eventually(lambda: bool(fleet.on(STATUS)), 30, "the status at the gateway")
            await eventually(lambda: up.status_refused is None, 10, "the status taken again")
            refused_then = up.refused["status: Not authorized"]
            await asyncio.sleep(0.5)  # several intervals: nothing new refused, nothing said
            assert up.refused["status: Not authorized"] == refused_then
            assert orjson.loads(fleet.on(STATUS)[-1])["status"] == "online"
            assert len(warnings()) == 1
            assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
                    and "status message" in r.getMessage()] == [
                f"broker takes the status message on {STATUS} again"]

            # denied again: a change of state, so one more WARNING (and only one)
            acl.write_text(ACL_DATA_ONLY)
            server.restart()
            await eventually(lambda: up.refused["status: Not authorized"] >= refused_then + 5, 30,
                             "refused again")
            assert len(warnings()) == 2 and up.status_refused == "Not authorized"
            await buf.put(samples(10, start=100))
            await eventually(lambda: buf.stats.backlog_samples == 0, 15, "data after the second denial")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    fleet.close()
    got = [wire.decode_batch(p) for p in fleet.on(DATA)]
    assert sorted(s.value for b in got for s in b.samples) == sorted(
        s.value for s in [*samples(30), *samples(10, start=100)])


async def test_mqtt_3_1_1_cannot_see_a_refused_status(
    tmp_path: Path, broker: tuple[Mosquitto, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """MQTT 3.1.1 has no reason code in a PUBACK: the denied status looks taken (documented)."""
    server, _ = broker
    cfg = MqttUplinkConfig(host=server.host, port=server.port, username="agent", password="agent-secret",
                           protocol="3.1.1", status_interval_s=0.1)
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with MqttUplink(cfg, "agent-1", dict) as up:
        await asyncio.sleep(0.8)
    assert not up.refused and up.status_refused is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
