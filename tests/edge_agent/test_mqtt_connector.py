"""MQTT connector on a real Mosquitto: both vendor shapes, bad payloads, broker restart, ack after commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.buffer import PutResult, SqliteBuffer
from edge_agent.connectors.mqtt import MqttConnector, MqttConnectorConfig
from edge_agent.deadletter import DeadLetter
from edge_agent.supervisor import supervise
from tests.edge_agent.test_mapping import sample_mapping
from tests.support.servers import Mosquitto
from tests.support.sinks import CommitsThenDies, CountsOutstanding, WrappedBuffer, running
from tests.support.waiting import eventually
from zhizao.backoff import Backoff
from zhizao.errors import ConnectionLost
from zhizao.model import Sample


def acme(i: int) -> bytes:
    return orjson.dumps(
        {
            "ts": 1795392000000 + i * 1000,
            "machine": "imm-3",
            "metrics": {"melt_temp": {"value": 200.0 + i, "unit": "degC"}},
            "status": {},
        }
    )


def brightline(i: int) -> bytes:
    return orjson.dumps(
        {
            "timestamp": f"2026-11-23T08:00:{i % 60:02d}.000+08:00",
            "device": "asm-1",
            "values": [{"name": "power_kw", "v": float(i), "uom": "kW", "q": 192}],
        }
    )


class Publisher:
    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-pub")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def make_config(broker: Mosquitto, protocol: str = "5") -> MqttConnectorConfig:
    return MqttConnectorConfig(
        host=broker.host,
        port=broker.port,
        protocol=protocol,
        mappings=[sample_mapping("acme"), sample_mapping("brightline")],
    )


async def drain(buf: SqliteBuffer) -> list[Sample]:
    out: list[Sample] = []
    while (b := await buf.take(10_000)) is not None:
        out.extend(b.samples)
        await buf.ack(b)
    return out


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_vendor_payloads_bad_ones_and_broker_restart(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    dl = DeadLetter(tmp_path / "dead.jsonl")
    conn = MqttConnector(make_config(mosquitto, protocol), "agent-1", dl)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.2, cap=1.0)))
        await eventually(lambda: conn.stats.connected, 15)
        pub = Publisher(mosquitto)
        for i in range(20):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
            pub.publish("brightline/plant1/asm-1/data", brightline(i))
        pub.publish("acme/line2/imm-3/telemetry", b"{garbage")
        pub.publish("brightline/plant1/asm-1/data", b'{"timestamp": "not a time", "values": []}')
        await eventually(lambda: conn.stats.samples_read == 40 and conn.stats.bad_payloads == 2, 15)
        pub.close()
        # broker restart with persistence: messages published while the agent is away arrive
        mosquitto.restart()
        pub = Publisher(mosquitto)
        for i in range(20, 30):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
        await eventually(lambda: conn.stats.samples_read == 50, 15)
        assert conn.stats.reconnects >= 1
        pub.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        got = await drain(buf)
    melt = sorted(s.value for s in got if s.signal == "melt_temp")
    assert melt == [200.0 + i for i in range(30)], "none lost, none duplicated"
    assert len([s for s in got if s.signal == "power_kw"]) == 20
    reasons = [r["reason"] for r in dl.read()]
    assert any("not valid JSON" in r for r in reasons) and any("timestamp" in r for r in reasons)


async def test_messages_received_while_agent_down_are_delivered(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Persistent session: what the broker queued for the agent while it was away arrives."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    cfg = make_config(mosquitto)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        conn = MqttConnector(cfg, "agent-1", dl)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected, 15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub = Publisher(mosquitto)
        for i in range(10):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
        pub.close()
        conn = MqttConnector(cfg, "agent-1", dl)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.samples_read == 10, 15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert len(await drain(buf)) == 10


async def test_messages_with_mqtt5_properties_take_paho_s_path_and_are_stored_once(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUBLISH carrying MQTT 5 properties (here a user property the broker forwards) is decoded
    by paho (``on_message``), the others by the connector's client: all are stored once, in order,
    and acknowledged after their commit."""
    from paho.mqtt.enums import MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    through_paho: list[str] = []
    on_message = MqttConnector._on_message

    def counted(self: MqttConnector, client: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        through_paho.append(msg.topic)
        on_message(self, client, u, msg)

    monkeypatch.setattr(MqttConnector, "_on_message", counted)
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        sink = CountsOutstanding(buf)
        conn = MqttConnector(make_config(mosquitto), "agent-1", dl)
        async with running(conn, sink):
            await asyncio.sleep(0.3)  # the SUBACK
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-pub-v5",
                              protocol=MQTTProtocolVersion.MQTTv5)
            pub.connect(mosquitto.host, mosquitto.port)
            pub.loop_start()
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = ("vendor", "acme")
            for i in range(10):
                pub.publish("acme/line2/imm-3/telemetry", acme(i), qos=1,
                            properties=props if i % 2 else None).wait_for_publish(5)
            pub.disconnect()
            pub.loop_stop()
            await eventually(lambda: conn.stats.samples_read == 10 and sink.outstanding == 0, 15)
        got = await drain(buf)
    assert len(through_paho) == 5, "the five with a property"
    assert [s.value for s in got] == [200.0 + i for i in range(10)]
    assert conn.stats.messages == 10 and conn.stats.bad_payloads == conn.stats.duplicates_skipped == 0


def messages_reach(conn: MqttConnector, n: int) -> Callable[[], bool]:
    return lambda: conn.stats.messages == n


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_committed_but_unacknowledged_messages_are_not_stored_twice_after_a_crash(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    """The broker redelivers (DUP) what the crashed process committed but never acknowledged; the
    next process finds their digests in the buffer, acknowledges them and stores nothing twice."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    cfg = make_config(mosquitto, protocol)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        dying = CommitsThenDies(buf)
        first = MqttConnector(cfg, "agent-1", dl)
        task = asyncio.create_task(first.run(dying))
        await eventually(lambda: first.stats.connected, 15)
        pub = Publisher(mosquitto)
        for i in range(10):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
        await eventually(lambda: first.stats.samples_read == 10, 15)  # submitted (in one or more bursts)
        assert sum([(await c).committed for c in dying.commits]) == 10
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # a new process (nothing in memory) on the same buffer and session
        second = MqttConnector(cfg, "agent-1", dl)
        task = asyncio.create_task(second.run(buf))
        await eventually(lambda: second.stats.duplicates_skipped == 10, 15, "redeliveries recognised")
        pub.publish("acme/line2/imm-3/telemetry", acme(10))
        await eventually(lambda: second.stats.samples_read == 1, 15)
        await asyncio.sleep(0.5)  # its commit, and the PUBACKs that follow commits
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # they were acknowledged: a third process gets nothing again
        third = MqttConnector(cfg, "agent-1", dl)
        task = asyncio.create_task(third.run(buf))
        await eventually(lambda: third.stats.connected, 15)
        await asyncio.sleep(1.0)
        assert third.stats.messages == 0
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
        got = await drain(buf)
    assert sorted(s.value for s in got) == [200.0 + i for i in range(11)], "each value once"


class FailsFirstCommits(WrappedBuffer):
    """A sink whose first ``n`` commits fail (disk full): the connector must not acknowledge those
    messages, and must store the broker's redeliveries of them."""

    def __init__(self, buf: SqliteBuffer, n: int) -> None:
        super().__init__(buf)
        self.failures = n

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        if samples and self.failures > 0:
            self.failures -= 1
            fut: asyncio.Future[PutResult] = asyncio.get_running_loop().create_future()
            fut.set_exception(OSError("database or disk is full"))  # what a failed group commit gives
            return fut
        return super().submit(samples, marks)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_failed_commit_is_stored_when_the_broker_redelivers(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    """A failed commit ends the session (nothing of it acknowledged); the supervisor reconnects
    the same connector and the broker redelivers (DUP) the messages whose commit failed: they are
    stored — not taken for duplicates."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    cfg = make_config(mosquitto, protocol)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        sink = FailsFirstCommits(buf, 3)
        conn = MqttConnector(cfg, "agent-1", dl)
        async with running(conn, sink):
            pass  # the persistent session and its subscriptions
        pub = Publisher(mosquitto)
        task = asyncio.create_task(supervise(conn, sink, backoff=Backoff(initial=0.1, cap=0.3)))
        for i in range(5):
            pub.publish("acme/line2/imm-3/telemetry", acme(i))
        await eventually(lambda: sink.failures == 0 and conn.stats.samples_read >= 5, 15)
        await eventually(lambda: sorted(s.value for s in conn_rows(buf)) == [200.0 + i for i in range(5)], 15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        pub.close()
        assert conn.stats.duplicates_skipped == 0 and conn.stats.commit_failures == 3
        assert conn.stats.reconnects >= 3 and conn.stats.dropped["commit_failed"] == 0
        got = await drain(buf)
    assert sorted(s.value for s in got) == [200.0 + i for i in range(5)], "each value once, none lost"


def conn_rows(buf: SqliteBuffer) -> list[Sample]:
    """Samples committed so far, read without taking (for waiting in tests)."""
    from edge_agent.buffer.codec import SampleDecoder

    assert buf._db is not None
    dec = SampleDecoder()
    return [dec.decode(r[0]) for r in buf._db.conn.execute("SELECT data FROM samples").fetchall()]


class RaisesOnFirstSubmit(WrappedBuffer):
    """A sink whose first ``submit`` raises (a closed buffer, a bug): not a commit that failed."""

    def __init__(self, buf: SqliteBuffer) -> None:
        super().__init__(buf)
        self.raised = False

    def submit(
        self, samples: Sequence[Sample], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]:
        if samples and not self.raised:
            self.raised = True
            raise RuntimeError("buffer is closed")
        return super().submit(samples, marks)


async def test_a_submit_that_raises_ends_the_run_and_the_redelivery_is_stored(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """``submit`` raising ends the run with ``ConnectionLost`` (its cause kept); nothing of that
    burst was acknowledged or taken as committed, so the broker's redelivery is stored."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        sink = RaisesOnFirstSubmit(buf)
        conn = MqttConnector(make_config(mosquitto), "agent-1", dl)
        task = asyncio.create_task(conn.run(sink))
        await eventually(lambda: conn.stats.connected, 15)
        pub = Publisher(mosquitto)
        pub.publish("acme/line2/imm-3/telemetry", acme(0))
        with pytest.raises(ConnectionLost, match="RuntimeError: buffer is closed") as info:
            await asyncio.wait_for(task, 15)
        assert isinstance(info.value.__cause__, RuntimeError) and not conn.stats.connected
        async with running(conn, sink):  # the supervisor's next run
            await eventually(lambda: conn.stats.samples_read == 2, 15, "the redelivery")
            await asyncio.sleep(0.5)
        pub.close()
        assert conn.stats.duplicates_skipped == 0
        got = await drain(buf)
    assert [s.value for s in got] == [200.0]


async def test_reading_stops_while_too_many_messages_wait_for_their_commit(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog arrives faster than commits end (Mosquitto sends a queued backlog past its
    in-flight limit): the connector stops reading at ``_MAX_HELD`` unacknowledged messages (so
    the digest ring covers every committed one the broker could redeliver) and reads on as commits
    settle; all arrive, once."""
    from edge_agent.connectors.mqtt import aio, connector

    monkeypatch.setattr(connector, "_MAX_HELD", 8)
    monkeypatch.setattr(aio, "PACKETS_PER_WAKEUP", 4)
    dl = DeadLetter(tmp_path / "dead.jsonl")
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.05) as buf:
        sink = CountsOutstanding(buf)
        conn = MqttConnector(make_config(mosquitto), "agent-1", dl)
        async with running(conn, sink):
            pass  # the persistent session and its subscriptions
        pub = Publisher(mosquitto)
        for i in range(200):
            pub.client.publish("acme/line2/imm-3/telemetry", acme(i), qos=1)
        pub.publish("acme/line2/imm-3/telemetry", acme(200))
        pub.close()
        async with running(conn, sink):
            await eventually(lambda: conn.stats.samples_read == 201 and sink.outstanding == 0, 30)
        assert 8 <= sink.most <= 8 + 4, sink.most
        got = await drain(buf)
    assert sorted(s.value for s in got) == [200.0 + i for i in range(201)]
