"""Connectors when the buffer cannot commit (its database full: SQLite's own SQLITE_FULL, see
``disk_full.py``), on the simulator's real asyncua server and a real Mosquitto: nothing read is lost
silently — OPC UA keeps and retries, within a bound beyond which drops are counted and exported;
MQTT acknowledges nothing of a failed commit and ends the session, so the broker redelivers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.buffer import SqliteBuffer
from edge_agent.config import load_agent_config
from edge_agent.connectors.mqtt import MqttConnector
from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentCollector, AgentMetrics
from edge_agent.supervisor import supervise
from simulator.opcua.server import OpcUaServer
from tests.edge_agent.disk_full import fill, free, samples
from tests.edge_agent.test_mqtt_connector import Publisher, acme, conn_rows, make_config
from tests.edge_agent.test_opcua_connector import T0, config, server, stop, written
from tests.support.forwarding import NoUplink, capture_clients
from tests.support.ports import free_port
from tests.support.servers import Mosquitto
from tests.support.sinks import HeldCommits, published_across_a_full_disk, redelivered_while_a_commit_fails
from tests.support.waiting import eventually
from zhizao.backoff import Backoff
from zhizao.model import Quality


def metrics_text(buf: SqliteBuffer, conn: OpcUaConnector | MqttConnector, tmp_path: Path) -> str:
    dead = DeadLetter(tmp_path / "metrics-dead.jsonl")
    fwd = Forwarder(buf, NoUplink(), dead)
    return AgentMetrics(AgentCollector(buf, fwd, [conn], dead, {"version": "test"})).render().decode()


def speeds(buf: SqliteBuffer) -> list[float]:
    """spindle_speed values the test wrote (not the server's initial one) committed so far."""
    return sorted(float(s.value) for s in samples(buf) if s.signal == "spindle_speed" and written(s))


async def write(srv: OpcUaServer, i: int) -> None:
    await srv.write(0, T0 + timedelta(seconds=i), [("spindle_speed", 1000.0 + i, Quality.GOOD)])


@contextlib.asynccontextmanager
async def opcua_into_buffer(
    tmp_path: Path, **config_kw: Any
) -> AsyncIterator[tuple[OpcUaConnector, SqliteBuffer, OpcUaServer, asyncio.Task[None]]]:
    """An OPC UA connector (``config(port, **config_kw)``) supervised into a real buffer, connected
    to the simulator's server and subscribed: ``(connector, buffer, server, supervisor task)``."""
    port = free_port()
    conn = OpcUaConnector(config(port, **config_kw), "agent-1", tmp_path)
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
        server(port) as srv,
    ):
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.2, cap=1.0)))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.3)
        yield conn, buf, srv, task


async def hold_values(conn: OpcUaConnector, buf: SqliteBuffer, srv: OpcUaServer, last: int) -> None:
    """With ``conn`` running into ``buf``: value 1 committed, then the database full and values
    2..``last`` written — held by the connector (its commits failed)."""
    await eventually(lambda: conn.stats.connected, 20, "connected")
    await asyncio.sleep(0.3)
    await write(srv, 1)
    await eventually(lambda: speeds(buf) == [1001.0], 10, "the first value committed")
    await fill(buf)
    for i in range(2, last + 1):
        await write(srv, i)
        await asyncio.sleep(0.05)
    await eventually(lambda: conn.stats.commit_failures > 0 and conn.held_samples >= last - 1, 10,
                     f"values 2..{last} held")


async def test_opcua_samples_of_failed_commits_are_kept_and_committed_once_the_buffer_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Values read while every commit fails (database full) are kept by the connector and
    committed, once each and in full, as soon as the buffer has room again; one ERROR line when
    commits start failing, one WARNING when they succeed again."""
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.opcua.connector")
    async with opcua_into_buffer(tmp_path) as (conn, buf, srv, task):
        for i in range(1, 6):
            await write(srv, i)
            await asyncio.sleep(0.05)
        await eventually(lambda: len(speeds(buf)) == 5, 10, "the first values committed")
        await fill(buf)
        for i in range(6, 31):
            await write(srv, i)
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert len(speeds(buf)) < 30, "the database is full"
        await free(buf)
        for i in range(31, 36):
            await write(srv, i)
            await asyncio.sleep(0.05)
        await eventually(lambda: len(speeds(buf)) >= 35, 10, "everything committed")
        await asyncio.sleep(0.3)
        await stop(task)
        assert speeds(buf) == [1000.0 + i for i in range(1, 36)], "each value once, none lost"
        assert conn.stats.commit_failures >= 2, "commits failed, their samples kept"
        assert conn.stats.dropped["commit_failed"] == 0 and conn.held_samples == 0
        assert conn.stats.samples_read == len(samples(buf)), "every sample read is committed"
        text = metrics_text(buf, conn, tmp_path)
    failures = conn.stats.commit_failures
    assert f'zhizao_agent_connector_commit_failures_total{{connector="opcua"}} {failures}.0' in text
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("opcua.connector")]
    errors = [m for lvl, m in lines if lvl == logging.ERROR]
    assert len(errors) == 1 and "buffer commit failed" in errors[0] and "kept in memory" in errors[0]
    assert any(lvl == logging.WARNING and "succeed again" in m for lvl, m in lines)


async def test_opcua_beyond_max_held_samples_the_oldest_are_dropped_counted_and_exported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While commits fail the connector keeps at most ``max_held_samples``; the oldest beyond are
    dropped under ``commit_failed``: counted, exported, logged once — every sample read is either
    committed or counted as dropped."""
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.opcua.connector")
    async with opcua_into_buffer(tmp_path, max_held_samples=5) as (conn, buf, srv, task):
        await write(srv, 1)
        await eventually(lambda: speeds(buf) == [1001.0], 10)
        await fill(buf)
        for i in range(2, 31):
            await write(srv, i)
            await asyncio.sleep(0.05)
        await eventually(lambda: conn.stats.dropped["commit_failed"] > 0, 10, "drops beyond the bound")
        await free(buf)
        await eventually(lambda: 1030.0 in speeds(buf) and conn.held_samples == 0, 10, "the newest kept")
        await asyncio.sleep(0.3)
        await stop(task)
        dropped = conn.stats.dropped["commit_failed"]
        stored = speeds(buf)
        assert conn.stats.samples_read == len(samples(buf)) + dropped, "committed or counted as dropped"
        assert len(stored) == len(set(stored)) and set(stored) <= {1000.0 + i for i in range(1, 31)}
        assert 30 - len(stored) == dropped, "only the written values dropped"
        text = metrics_text(buf, conn, tmp_path)
    family = "zhizao_agent_connector_samples_dropped_total"
    assert f'{family}{{connector="opcua",reason="commit_failed"}} {dropped}.0' in text
    warnings = [r.getMessage() for r in caplog.records
                if r.name.endswith("opcua.connector") and r.levelno == logging.WARNING]
    assert sum("max_held_samples=5" in m for m in warnings) == 1, warnings


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_mqtt_a_failed_commit_ends_the_session_and_the_broker_redelivers(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Commits fail (database full): nothing of them is acknowledged and the session ends (the
    broker resends unacknowledged messages only on a new connection — staying connected stalled
    the session silently once its in-flight window filled); the supervisor reconnects and, once
    the buffer has room, the broker's redeliveries are stored: every message once, none lost."""
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.mqtt.connector")
    dl = DeadLetter(tmp_path / "dead.jsonl")
    conn = MqttConnector(make_config(mosquitto, protocol), "agent-1", dl)
    topic = "acme/line2/imm-3/telemetry"
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.1, cap=0.5)))
        await eventually(lambda: conn.stats.connected, 15)
        await asyncio.sleep(0.3)  # the SUBACK
        pub = Publisher(mosquitto)
        got = await published_across_a_full_disk(
            lambda i: pub.publish(topic, acme(i)), lambda: samples(buf), lambda: fill(buf),
            lambda: free(buf), lambda: conn.stats.commit_failures >= 1)
        await stop(task)
        pub.close()
    assert got == [200.0 + i for i in range(30)], "each value once, none lost"
    assert conn.stats.dropped["commit_failed"] == 0 and conn.stats.duplicates_skipped == 0
    assert conn.stats.commit_failures >= 1 and conn.stats.reconnects >= 1, "the session ended"
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("mqtt.connector")]
    errors = [m for lvl, m in lines if lvl == logging.ERROR]
    assert len(errors) == 1 and "ending the session" in errors[0], errors
    assert any(lvl == logging.WARNING and "succeed again" in m for lvl, m in lines)


AGENT = """
[agent]
id = "agent-1"
state_dir = "{state}"

[buffer]
commit_interval_s = 0.02

[health]
enabled = false

[[connectors]]
type = "opcua"
name = "opcua"
endpoint = "opc.tcp://127.0.0.1:{port}/zhizao/sim"
browse = [{{ pattern = "Objects/plant1/*/line1/*/*" }}]
publishing_interval_ms = 50
sampling_interval_ms = 0
queue_size = 100
request_timeout_s = 2

[uplink]
type = "http"
url = "http://127.0.0.1:{closed}"
"""


async def test_opcua_samples_still_held_when_the_agent_stops_are_counted_and_logged_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent stopped while its buffer cannot commit (database full): what the OPC UA connector
    read and could not commit has nowhere to go — it is dropped under ``stopped_uncommitted``,
    counted, and one ERROR line says how many samples of which time span were lost (it used to
    vanish with the process, uncounted). Every sample read is committed or counted as dropped."""
    caplog.set_level(logging.WARNING)
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "agent.toml"
    path.write_text(AGENT.format(state=state, port=port, closed=free_port()))
    cfg, digest = load_agent_config(path)
    agent = Agent(cfg, digest)
    (conn,) = agent.connectors
    assert isinstance(conn, OpcUaConnector)
    stop_event = asyncio.Event()
    async with server(port) as srv:
        task = asyncio.create_task(agent.run(stop_event))
        await hold_values(conn, agent.buffer, srv, 11)
        stop_event.set()
        await asyncio.wait_for(task, 30)
    lost = conn.stats.dropped["stopped_uncommitted"]
    assert lost >= 10 and conn.held_samples == 0 and conn.stats.dropped["commit_failed"] == 0
    async with SqliteBuffer(cfg.buffer.path or state / "buffer.sqlite", "agent-1") as reopened:
        assert speeds(reopened) == [1001.0], "nothing of the values read after the disk filled"
        assert conn.stats.samples_read == len(samples(reopened)) + lost, "committed or counted as lost"
    errors = [r.getMessage() for r in caplog.records
              if r.name.endswith("opcua.connector") and r.levelno == logging.ERROR]
    assert any(f"{lost} samples read and never committed" in m and "stopped_uncommitted" in m
               and (T0 + timedelta(seconds=2)).isoformat() in m for m in errors), errors


async def test_opcua_a_reconnect_while_commits_fail_does_not_collect_a_held_value_again(
    tmp_path: Path,
) -> None:
    """Commits fail (database full) and values are held; the session is lost and re-created. The
    new subscription's initial notification is the current value, already held: the new session's
    converter starts from the newest sample read, not from the newest committed, so it is a repeat
    — once the disk has room every value is committed once (the old code committed 1005 twice)."""
    port = free_port()
    conn = OpcUaConnector(config(port), "agent-1", tmp_path)
    clients = capture_clients(conn)
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
        server(port) as srv,
    ):
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.2, cap=1.0)))
        await hold_values(conn, buf, srv, 5)
        await clients[-1].connection_lost_callback(ConnectionError("blip"))  # the session is lost
        await eventually(lambda: conn.stats.reconnects >= 1 and conn.stats.connected, 15, "reconnected")
        await asyncio.sleep(0.5)  # the new subscription's initial notifications
        await free(buf)
        await eventually(lambda: conn.held_samples == 0 and 1005.0 in speeds(buf), 10)
        await asyncio.sleep(0.3)
        await stop(task)
        got = speeds(buf)
        stored = len(samples(buf))
    assert got == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0], f"each value once: {got}"
    assert conn.stats.samples_read == stored


async def test_opcua_held_samples_are_committed_at_stop_when_the_buffer_has_room_again(
    tmp_path: Path,
) -> None:
    """Commits fail and samples are held; then the OPC UA server goes away; the disk gets room
    again and the agent is stopped ('free space, restart') before the held samples' retry comes
    round (a retry schedule of a minute here: held samples are retried without a session too,
    test_opcua_held_retry.py). The stop sequence (readers cancelled, ``buffer.flush()``,
    ``settle_at_stop``) hands them over once more: all committed, none dropped (the old code
    dropped all 6 under stopped_uncommitted)."""
    port = free_port()
    conn = OpcUaConnector(config(port), "agent-1", tmp_path, retry=Backoff(initial=60.0, cap=60.0))
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        async with server(port) as srv:
            task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=5.0, cap=5.0)))
            await hold_values(conn, buf, srv, 7)
        await eventually(lambda: not conn.stats.connected, 10, "the server is gone")
        await asyncio.sleep(0.3)
        assert conn.held_samples >= 6
        await free(buf)
        await asyncio.sleep(1.5)  # longer than COMMIT_RETRY_S; the retry is 30-60 s away
        assert conn.held_samples >= 6
        await stop(task)  # the agent's stop sequence (edge_agent/agent.py)
        await buf.flush()
        lost = await conn.settle_at_stop(buf)
        got = speeds(buf)
    assert lost == 0 and conn.stats.dropped.get("stopped_uncommitted", 0) == 0
    assert got == [1000.0 + i for i in range(1, 8)]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_mqtt_a_redelivery_waiting_on_a_commit_that_fails_is_redelivered_again_and_stored(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    """Messages whose commit is slow; the connection drops and the broker redelivers them (DUP) on
    the new connection while the original commit is pending: they wait on it. The commit then
    fails: the new connection is ended too (a broker resends only on a new connection), so the
    broker redelivers them once more and they are stored — every message once. The old code ended
    only the original, already gone, connection: messages 3-7 stayed unacknowledged on a live
    session, never stored, holding the broker's in-flight window."""
    dl = DeadLetter(tmp_path / "dead.jsonl")
    conn = MqttConnector(make_config(mosquitto, protocol), "agent-1", dl)
    topic = "acme/line2/imm-3/telemetry"
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        sink = HeldCommits(buf)

        def blip() -> None:  # the connection drops while the commit is pending
            assert conn._session is not None
            conn._session.end("network blip")

        task = asyncio.create_task(supervise(conn, sink, backoff=Backoff(initial=0.1, cap=0.3)))
        pub = Publisher(mosquitto)
        try:
            await eventually(lambda: conn.stats.connected, 15)
            await asyncio.sleep(0.3)  # the SUBACK
            got = await redelivered_while_a_commit_fails(
                lambda i: pub.publish(topic, acme(i)), sink, lambda: conn_rows(buf),
                lambda: conn.stats.samples_read == 8, blip, lambda: conn.stats.duplicates_skipped)
        finally:
            await stop(task)
            pub.close()
    assert got == [200.0 + i for i in range(10)], f"each value once, none lost: {got}"
