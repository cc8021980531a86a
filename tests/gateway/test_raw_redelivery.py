"""Raw vendor messages on a real Mosquitto: a redelivery after a crash between commit and PUBACK is
stored once; the same payload published again is stored again; reading stops while too many raw
messages wait for their commit.

The intake runs in-process; a "crash" is a sink that commits to the real buffer (records and marks)
but never tells the intake, so no PUBACK is sent — then a new :class:`UnsIntake` (a new process:
new nonce, nothing in memory) runs on the same buffer and the same persistent session, as the edge
agent's MQTT connector is tested (``tests/edge_agent/test_mqtt_connector.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.deadletter import DeadLetter
from gateway import intake as intake_module
from gateway.config import GatewayConfig
from gateway.fleet import FleetState
from gateway.intake import UnsIntake
from tests.edge_agent.test_mapping import sample_mapping
from tests.edge_agent.test_mqtt_connector import Publisher, acme
from tests.support.servers import Mosquitto
from tests.support.sinks import CommitsThenDies, CountsOutstanding, running
from tests.support.waiting import eventually

TOPIC = "acme/line2/imm-3/telemetry"
MARKS = "mqtt:broker:dup:"


def _config(tmp_path: Path, broker: Mosquitto) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "id": "gw-1", "site": "plant", "deadletter_path": str(tmp_path / "dl.jsonl"),
        "broker": {"host": broker.host, "port": broker.port, "mappings": [sample_mapping("acme")]},
        "uplink": {"http": {"url": "http://127.0.0.1:1"}},
        "buffer": {"path": str(tmp_path / "b.sqlite"), "commit_interval_s": 0.02}})


def _process(cfg: GatewayConfig) -> UnsIntake:
    """A new gateway process's intake: a new nonce, nothing in memory."""
    return UnsIntake(cfg, DeadLetter(cfg.deadletter_path), FleetState())


async def _subscribed(cfg: GatewayConfig, buf: SqliteBuffer) -> None:
    """The gateway's persistent session and its subscriptions exist (what is published from now on
    reaches it, connected or not)."""
    async with running(_process(cfg), buf):
        await asyncio.sleep(0.3)  # the SUBACK


async def _stored(buf: SqliteBuffer) -> list[EncodedBatch]:
    records = await buf.take_bulk(10_000)
    assert all(r.is_record for r in records)
    return records


def _values(records: Sequence[EncodedBatch]) -> list[float]:
    return sorted(float(s.value) for r in records for s in r.decode().samples)


async def test_a_raw_message_committed_but_not_acknowledged_is_stored_once_by_the_next_process(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The broker redelivers (DUP) the raw messages the crashed gateway committed but never
    acknowledged; the next process (a new nonce: new batch ids) finds their digests in the buffer,
    acknowledges them and stores nothing twice."""
    cfg = _config(tmp_path, mosquitto)
    async with cfg.buffer.build(cfg.id) as buf:
        await _subscribed(cfg, buf)
        pub = Publisher(mosquitto)
        dying = CommitsThenDies(buf)
        first = _process(cfg)
        async with running(first, dying):
            for i in range(10):
                pub.publish(TOPIC, acme(i))
            await eventually(lambda: first.stats.samples_read == 10, 15)
            assert sum([(await c).committed for c in dying.commits]) == 10
        assert len(await buf.marks(MARKS)) == 10, "each digest committed with its record"
        second = _process(cfg)
        async with running(second, buf):
            await eventually(lambda: second.stats.duplicates_skipped == 10, 15, "redeliveries recognised")
            pub.publish(TOPIC, acme(10))
            await eventually(lambda: second.stats.samples_read == 1, 15)
            await asyncio.sleep(0.5)  # its commit, and the PUBACKs that follow commits
        assert second.stats.messages == 11 and second.counts.raw_messages == 11
        third = _process(cfg)  # they were acknowledged: a third process gets nothing again
        async with running(third, buf):
            await asyncio.sleep(1.0)
        assert third.stats.messages == 0
        pub.close()
        records = await _stored(buf)
    assert _values(records) == [200.0 + i for i in range(11)], "each value once"
    assert len({r.batch_id for r in records}) == 11


async def test_the_same_raw_payload_published_again_is_stored_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Not a redelivery (no DUP flag): a payload published twice is stored twice, also by a new
    process that has the payload's digest in its ring of committed messages — no false dedup."""
    cfg = _config(tmp_path, mosquitto)
    async with cfg.buffer.build(cfg.id) as buf:
        await _subscribed(cfg, buf)
        pub = Publisher(mosquitto)
        first = _process(cfg)
        async with running(first, buf):
            pub.publish(TOPIC, acme(0))
            pub.publish(TOPIC, acme(0))
            await eventually(lambda: first.stats.samples_read == 2, 15)
            await asyncio.sleep(0.3)
        assert len(await buf.marks(MARKS)) == 2, "the ring knows the payload"
        second = _process(cfg)
        async with running(second, buf):
            pub.publish(TOPIC, acme(0))
            await eventually(lambda: second.stats.samples_read == 1, 15)
            await asyncio.sleep(0.3)
        pub.close()
        assert first.stats.duplicates_skipped == second.stats.duplicates_skipped == 0
        records = await _stored(buf)
    assert _values(records) == [200.0] * 3
    assert len({r.batch_id for r in records}) == 3


async def test_reading_stops_while_too_many_raw_messages_wait_for_their_commit(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog queued while the gateway was away arrives faster than commits end (Mosquitto sends
    it past the Receive Maximum): the intake stops reading at ``_MAX_HELD`` raw messages whose
    commit has not ended (so the digest ring covers every committed one the broker could redeliver)
    and reads on as commits settle; all arrive, once."""
    from edge_agent.connectors.mqtt import aio

    monkeypatch.setattr(intake_module, "_MAX_HELD", 8)
    monkeypatch.setattr(aio, "PACKETS_PER_WAKEUP", 4)
    cfg = _config(tmp_path, mosquitto)
    async with cfg.buffer.build(cfg.id) as buf:
        await _subscribed(cfg, buf)
        pub = Publisher(mosquitto)
        for i in range(200):
            pub.client.publish(TOPIC, acme(i), qos=1)
        pub.publish(TOPIC, acme(200))
        pub.close()
        sink = CountsOutstanding(buf)
        intake = _process(cfg)
        async with running(intake, sink):
            await eventually(lambda: intake.stats.samples_read == 201 and sink.outstanding == 0, 30)
        assert 8 <= sink.most <= 8 + 4, sink.most
        records = await _stored(buf)
    assert _values(records) == [200.0 + i for i in range(201)]
