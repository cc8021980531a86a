"""MQTT uplink against a real Mosquitto with a password file and an ACL: a publish the broker
refuses (MQTT 5 PUBACK 0x87 Not authorized) is not a delivery — the batch stays in the buffer,
one ERROR names the topic and the reason, the refusal is counted; once the ACL is fixed the
batch goes out exactly once. 0x10 No matching subscribers is a delivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

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
from zhizao.model import AssetPath, Sample

OTHER = AssetPath("plant1", "a1", "line2", "asm-1")
DENIED = topics.data_topic(ASSET)  # zhizao/v1/plant1/a1/line1/cnc-1
ALLOWED = topics.data_topic(OTHER)

ACL_LINE2_ONLY = (
    "user agent\n"
    "topic write zhizao/v1/agents/#\n"
    "topic write zhizao/v1/plant1/a1/line2/#\n"
    "user gw\n"
    "topic read zhizao/#\n"
)
ACL_FIXED = ACL_LINE2_ONLY.replace("user gw\n", "topic write zhizao/v1/plant1/a1/line1/#\nuser gw\n")


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """Users ``agent`` and ``gw``; the ACL lets the agent write line2 and its status only."""
    with acl_broker(tmp_path, ACL_LINE2_ONLY) as b:
        yield b


def site_gateway(broker: Mosquitto) -> Subscriber:
    return Subscriber(broker, [topics.DATA_FILTER])


async def test_a_publish_the_acl_denies_keeps_the_batch_until_the_acl_is_fixed(
    tmp_path: Path, secured_broker: tuple[Mosquitto, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broker, acl = secured_broker
    gateway = site_gateway(broker)
    await eventually(gateway.client.is_connected, 10, "the gateway's subscriber")
    await asyncio.sleep(0.2)  # its SUBSCRIBE is through
    denied = samples(30)
    allowed = [Sample(OTHER, "power_kw", s.ts, s.value, "kW") for s in samples(10)]
    cfg = MqttUplinkConfig(host=broker.host, port=broker.port, username="agent", password="agent-secret",
                           timeout_s=5.0, backoff_cap_s=0.3)
    caplog.set_level(logging.ERROR, logger="edge_agent.uplinks.mqtt.uplink")
    async with (SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf,
                MqttUplink(cfg, "agent-1", lambda: {"backlog": buf.stats.backlog_samples}) as up):
        dead = DeadLetter(tmp_path / "dead.jsonl")
        fwd = Forwarder(buf, up, dead, max_items=1000, linger=0.05,
                        backoff=Backoff(initial=0.1, cap=0.3))
        metrics = AgentMetrics(AgentCollector(buf, fwd, [], dead, {"version": "test"}))
        await buf.put([*denied, *allowed])
        task = asyncio.create_task(fwd.run())
        try:
            # the broker took the allowed part and refused the denied one (PUBACK 0x87)
            await eventually(lambda: bool(gateway.on(ALLOWED)), 15, "the allowed part")
            await eventually(lambda: fwd.stats.retries >= 2 or buf.stats.backlog_samples == 0, 15,
                             "a refusal, retried")
            assert buf.stats.backlog_samples == len(denied) + len(allowed), "the batch left the buffer"
            assert fwd.stats.sent_samples == 0 and not gateway.on(DENIED)
            assert up.refused["Not authorized"] >= 2
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert errors and all(f"broker refused publish to {DENIED}: Not authorized" in e
                                  and "check the broker's ACL" in e for e in errors)
            assert not any(ALLOWED in e for e in errors)  # the part it took is not named
            text = metrics.render().decode()
            retries = next(float(line.split()[-1]) for line in text.splitlines()
                           if line.startswith("zhizao_agent_uplink_retries_total "))
            assert retries >= 2
            refused = next(float(line.split()[-1]) for line in text.splitlines()
                           if line.startswith('zhizao_agent_uplink_refused_total{reason="Not authorized"} '))
            assert refused >= 2
            assert not dead.counts  # kept in the buffer, never dead-lettered

            acl.write_text(ACL_FIXED)
            broker.restart()
            await eventually(lambda: buf.stats.backlog_samples == 0, 30, "the batch sent after the fix")
            await eventually(lambda: bool(gateway.on(DENIED)), 15, "the denied part at the gateway")
            await asyncio.sleep(1.0)  # anything sent twice would arrive now
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    gateway.close()
    got = [wire.decode_batch(p) for p in gateway.on(DENIED)]
    assert len(got) == 1, f"the denied part arrived {len(got)} times"
    assert list(got[0].samples) == denied and got[0].producer == "agent-1"
    # the allowed part was resent with the batch (same id; the gateway deduplicates it)
    again = [wire.decode_batch(p) for p in gateway.on(ALLOWED)]
    assert {b.batch_id for b in again} == {got[0].batch_id.rsplit(".", 1)[0] + ".1"}
    assert all(list(b.samples) == allowed for b in again)
    assert fwd.stats.sent_samples == len(denied) + len(allowed)


async def test_no_matching_subscribers_is_a_delivery(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Mosquitto answers a publish nobody subscribed to with PUBACK 0x10: success, not a refusal."""
    cfg = MqttUplinkConfig(host=mosquitto.host, port=mosquitto.port, timeout_s=5.0)
    assert cfg.protocol == "5"  # the default: the only protocol in which a refusal can be seen
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1") as buf, MqttUplink(cfg, "agent-1", dict) as up:
        await buf.put(samples(5))
        batch = await buf.take(100)
        assert batch is not None
        await up.send(batch)  # no subscriber at all
        assert not up.refused
