"""OPC UA samples held after failed buffer commits are retried on their own schedule, not only while an
OPC UA session runs: through a long OPC UA outage after a disk-full period they are committed as soon
as the buffer has room, once each and in order (simulator's real asyncua server, real SQLite buffer
made full with ``PRAGMA max_page_count``, see ``disk_full.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.opcua import OpcUaConnector
from edge_agent.supervisor import supervise
from tests.edge_agent.disk_full import free, samples
from tests.edge_agent.test_connector_commit_failures import hold_values, speeds
from tests.edge_agent.test_opcua_connector import config, server, stop, written
from tests.support.forwarding import capture_clients
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.backoff import Backoff
from zhizao.errors import ConnectionLost


def in_order(buf: SqliteBuffer) -> list[float]:
    """spindle_speed values the test wrote, in the order they were committed (row order)."""
    return [float(s.value) for s in samples(buf) if s.signal == "spindle_speed" and written(s)]


async def test_opcua_held_samples_are_committed_without_a_session_once_the_buffer_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Commits fail (database full) and values are held; the OPC UA server goes away and stays away;
    the disk gets room again. With the default retry schedule the held values are committed while
    no session runs — every value once, in order, nothing dropped, one WARNING that commits succeed
    again. The old code retried only within a session: they waited in memory until the server came
    back or the agent stopped."""
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.opcua.connector")
    port = free_port()
    conn = OpcUaConnector(config(port), "agent-1", tmp_path)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        async with server(port) as srv:
            task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.5, cap=2.0)))
            await hold_values(conn, buf, srv, 7)
        await eventually(lambda: not conn.stats.connected, 10, "the server is gone")
        reconnects = conn.stats.reconnects
        await eventually(lambda: conn.held_samples >= 6, 10, "the session's last hand-over failed too")
        await free(buf)
        await eventually(lambda: conn.held_samples == 0 and len(speeds(buf)) == 7, 30,
                         "the held values committed without a session")
        assert not conn.stats.connected and conn.stats.reconnects == reconnects, "no session ran"
        await stop(task)
        await buf.flush()
        lost = await conn.settle_at_stop(buf)
        got = in_order(buf)
        stored = len(samples(buf))
    assert got == [1000.0 + i for i in range(1, 8)], f"each value once, in order: {got}"
    assert lost == 0 and conn.stats.dropped == {"commit_failed": 0}
    assert conn.stats.samples_read == stored, "every sample read is committed"
    assert conn.stats.commit_failures >= 1
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("opcua.connector")]
    assert sum("succeed again" in m for m in lines) == 1, lines


async def test_opcua_values_committed_by_the_retry_are_not_collected_again_by_the_next_session(
    tmp_path: Path,
) -> None:
    """Values are held (database full); the session is lost and, while none runs, the disk gets room:
    the retry commits them (marks included). The next session's initial notification is the newest
    value, already committed: a repeat, not stored again — every value once, in order."""
    port = free_port()
    conn = OpcUaConnector(config(port), "agent-1", tmp_path)
    clients = capture_clients(conn)
    reconnect = asyncio.Event()

    async def runner() -> None:
        """A supervisor that reconnects only when told (no session between)."""
        while True:
            with contextlib.suppress(ConnectionLost):
                await conn.run(buf)
            await reconnect.wait()
            reconnect.clear()

    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
        server(port) as srv,
    ):
        task = asyncio.create_task(runner())
        await hold_values(conn, buf, srv, 5)
        await clients[-1].connection_lost_callback(ConnectionError("blip"))  # the session is lost
        await eventually(lambda: not conn.stats.connected, 10, "the session ended")
        await eventually(lambda: conn.held_samples >= 4, 10, "the session's last hand-over failed too")
        await free(buf)
        await eventually(lambda: conn.held_samples == 0 and len(speeds(buf)) == 5, 30,
                         "the held values committed without a session")
        assert not conn.stats.connected
        repeats = conn.stats.skipped["repeat"]
        reconnect.set()
        await eventually(lambda: conn.stats.connected and conn.stats.reconnects >= 1, 15, "reconnected")
        await eventually(lambda: conn.stats.skipped["repeat"] > repeats, 10, "the initial notifications")
        await asyncio.sleep(0.3)
        await stop(task)
        got = in_order(buf)
        stored = len(samples(buf))
    assert got == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0], f"each value once, in order: {got}"
    assert conn.stats.samples_read == stored and conn.stats.dropped == {"commit_failed": 0}
