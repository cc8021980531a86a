"""OPC UA connector against the simulator's real asyncua server: values, units, qualities,
server restart, vanished node, polling, and secure channels (trusted and refused)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
from edge_agent.connectors.opcua.security import ensure_client_certificate, fingerprint, load_der
from edge_agent.supervisor import supervise
from simulator.opcua.security import OpcUaSecurity
from simulator.opcua.server import OpcUaServer
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.backoff import Backoff
from zhizao.errors import SecurityError
from zhizao.model import AssetPath, Quality, Sample

CNC = AssetPath("plant1", "a1", "line1", "cnc-1")
IMM = AssetPath("plant1", "a1", "line1", "imm-1")
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def machines(with_temp: bool = True) -> list[tuple[AssetPath, dict[str, tuple[Any, str | None]]]]:
    imm: dict[str, tuple[Any, str | None]] = {"parts_total": (0, None), "state": ("", None)}
    if with_temp:
        imm["melt_temp"] = (0.0, "degC")
    return [(CNC, {"spindle_speed": (0.0, "rpm"), "power_kw": (0.0, "kW")}), (IMM, imm)]


@contextlib.asynccontextmanager
async def server(
    port: int, with_temp: bool = True, security: OpcUaSecurity | None = None
) -> AsyncIterator[OpcUaServer]:
    async with OpcUaServer(machines(with_temp), port=port, security=security) as srv:
        yield srv


async def write_round(srv: OpcUaServer, i: int, with_temp: bool = True) -> None:
    ts = T0 + timedelta(seconds=i)
    await srv.write(
        0,
        ts,
        [
            ("spindle_speed", 1000.0 + i, Quality.GOOD),
            ("power_kw", float(i), Quality.UNCERTAIN if i % 5 == 0 else Quality.GOOD),
        ],
    )
    vals: list[tuple[str, Any, Quality]] = [
        ("parts_total", i, Quality.GOOD),
        ("state", "running", Quality.GOOD),
    ]
    if with_temp:
        vals.append(("melt_temp", 200.0 + i, Quality.BAD if i % 7 == 3 else Quality.GOOD))
    await srv.write(1, ts, vals)


def config(port: int, **kw: Any) -> OpcUaConnectorConfig:
    doc: dict[str, Any] = {
        "endpoint": f"opc.tcp://127.0.0.1:{port}/zhizao/sim",
        "browse": [{"pattern": "Objects/plant1/*/line1/*/*"}],
        "publishing_interval_ms": 50,
        "sampling_interval_ms": 0,
        "queue_size": 100,
        "request_timeout_s": 2,
    }
    doc.update(kw)
    return OpcUaConnectorConfig.model_validate(doc)


async def drain(buf: SqliteBuffer) -> list[Sample]:
    await buf.flush()
    out: list[Sample] = []
    while (b := await buf.take(100_000)) is not None:
        out.extend(b.samples)
        await buf.ack(b)
    return out


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_subscribe_values_units_qualities_restart_and_vanished_node(tmp_path: Path) -> None:
    port = free_port()
    conn = OpcUaConnector(config(port), "agent-1", tmp_path)
    async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
        async with server(port) as srv:
            task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.2, cap=1.0)))
            await eventually(lambda: conn.stats.connected)
            await asyncio.sleep(0.3)
            for i in range(1, 21):
                await write_round(srv, i)
                await asyncio.sleep(0.02)
            await eventually(
                lambda: len({t.signal for t in conn.tags}) == 5 and conn.stats.samples_read >= 100 + 5
            )
        # restart without melt_temp: the node vanished during the outage
        async with server(port, with_temp=False) as srv:
            back = time.monotonic()
            await eventually(lambda: conn.stats.connected and conn.stats.reconnects >= 1)
            assert time.monotonic() - back < 5.0, "collection resumes within a few seconds of the restart"
            await asyncio.sleep(0.3)
            for i in range(21, 31):
                await write_round(srv, i, with_temp=False)
                await asyncio.sleep(0.02)
            await eventually(
                lambda: any(s.signal == "spindle_speed" and s.value == 1030.0 for s in conn_samples(buf))
            )
            await stop(task)
        got = await drain(buf)
    assert conn.stats.vanished_nodes == 1 and any("melt_temp" in n for n in conn.skipped_nodes)
    speeds = [s for s in got if s.signal == "spindle_speed" and written(s)]
    assert sorted(s.value for s in speeds) == [1000.0 + i for i in range(1, 31)], "no gap but the downtime"
    assert all(s.unit == "rpm" and s.asset == CNC for s in speeds)
    temps = {s.ts: s for s in got if s.signal == "melt_temp" and written(s)}
    assert temps[T0 + timedelta(seconds=3)].quality is Quality.BAD
    assert (
        temps[T0 + timedelta(seconds=4)].quality is Quality.GOOD
        and temps[T0 + timedelta(seconds=4)].unit == "degC"
    )
    power = {s.ts: s for s in got if s.signal == "power_kw"}
    assert power[T0 + timedelta(seconds=5)].quality is Quality.UNCERTAIN
    parts = [s for s in got if s.signal == "parts_total" and written(s)]
    assert all(isinstance(s.value, int) and s.unit is None for s in parts)


async def test_up_means_collecting_the_monitored_items_exist_when_up_turns_true(tmp_path: Path) -> None:
    """``connected`` (the agent's ``connector_up``, the health endpoint's "connected") turns true only
    once every node's monitored item exists on the server, so a value written from then on is
    collected. It used to turn true at the session's connect, before the items were created: a
    restarted agent reported up while values were still going uncollected."""
    port = free_port()
    conn = OpcUaConnector(config(port, subscribe_batch_size=1), "agent-1", tmp_path)
    async with (
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
        server(port) as srv,
    ):
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.2, cap=1.0)))
        await eventually(lambda: conn.stats.connected, interval=0)  # the first pass it is true
        items_at_up = _monitored_items(srv)
        await write_round(srv, 1)
        await eventually(
            lambda: any(s.signal == "spindle_speed" and s.value == 1001.0 for s in conn_samples(buf))
        )
        await stop(task)
    assert items_at_up == len(conn.tags) == 5


def _monitored_items(srv: OpcUaServer) -> int:
    """Monitored items of every subscription on the simulator's asyncua server."""
    assert srv._server is not None
    subs = srv._server.iserver.subscription_service.subscriptions.values()
    return sum(len(s.monitored_item_srv._monitored_items) for s in subs)


def written(s: Sample) -> bool:
    """Written by the test (not the server's initial value, stamped with the wall clock)."""
    return T0 < s.ts <= T0 + timedelta(seconds=100)


def conn_samples(buf: SqliteBuffer) -> list[Sample]:
    """Samples committed so far, read without taking (for waiting in tests)."""
    assert buf._db is not None
    from edge_agent.buffer.codec import SampleDecoder

    dec = SampleDecoder()
    rows = buf._db.conn.execute("SELECT data FROM samples").fetchall()
    return [dec.decode(r[0]) for r in rows]


async def test_polling_mode_with_node_ids(tmp_path: Path) -> None:
    port = free_port()
    async with server(port) as srv:
        cfg = config(
            port,
            browse=[],
            mode="poll",
            poll_interval_ms=50,
            nodes=[
                {"node_id": f"nsu=urn:zhizao:simulator;s={CNC}/spindle_speed"},
                {"node_id": f"ns={srv.namespace_index};s={IMM}/melt_temp", "signal": "temp_melt"},
                {"node_id": f"ns={srv.namespace_index};s={IMM}/no_such_signal"},
            ],
        )
        conn = OpcUaConnector(cfg, "agent-1", tmp_path)
        async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
            task = asyncio.create_task(conn.run(buf))
            await eventually(lambda: conn.stats.connected)
            for i in range(1, 6):
                await write_round(srv, i)
                await asyncio.sleep(0.25)
            await stop(task)
            got = await drain(buf)
    speeds = sorted(s.value for s in got if s.signal == "spindle_speed" and written(s))
    assert speeds == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0], "each change once"
    assert {s.unit for s in got if s.signal == "temp_melt"} == {"degC"}
    assert conn.stats.vanished_nodes == 1


@pytest.fixture
def pki(tmp_path: Path) -> tuple[OpcUaSecurity, Path, Path]:
    sec = OpcUaSecurity(tmp_path / "server-pki", tmp_path / "server-trust")
    sec.trust_dir.mkdir(parents=True)
    return sec, tmp_path / "agent" / "pki" / "client-cert.der", tmp_path / "agent" / "pki" / "client-key.pem"


async def test_sign_and_encrypt_trusted_by_fingerprint(
    tmp_path: Path, pki: tuple[OpcUaSecurity, Path, Path]
) -> None:
    sec, cert, key = pki
    app_uri = "urn:zhizao:agent:agent-1"
    client_fp = await ensure_client_certificate(cert, key, app_uri)
    assert await ensure_client_certificate(cert, key, app_uri) == client_fp, "generated once, then reused"
    shutil.copy(cert, sec.trust_dir / "agent.der")
    port = free_port()
    async with server(port, security=sec) as srv:
        server_fp = fingerprint(load_der(sec.cert_path))
        security = {
            "mode": "SignAndEncrypt",
            "policy": "Basic256Sha256",
            "client_cert": str(cert),
            "client_key": str(key),
            "server_cert_fingerprints": [f"sha256:{server_fp}"],
        }
        conn = OpcUaConnector(config(port, security=security), "agent-1", tmp_path / "agent")
        async with SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf:
            task = asyncio.create_task(conn.run(buf))
            await eventually(lambda: conn.stats.connected)
            await asyncio.sleep(0.2)
            await write_round(srv, 1)
            await eventually(
                lambda: any(s.signal == "spindle_speed" and s.value == 1001.0 for s in conn_samples(buf))
            )
            await stop(task)

        # the same server, not trusted: refused, and never a fallback to no security
        wrong = {**security, "server_cert_fingerprints": ["sha256:" + ":".join(["AB"] * 32)]}
        refused = OpcUaConnector(config(port, security=wrong), "agent-1", tmp_path / "agent")
        with pytest.raises(SecurityError, match=f"not trusted \\(sha256:{server_fp}\\)"):
            await refused.run(buf)
        trust_folder = tmp_path / "trusted"
        trust_folder.mkdir()
        via_dir = {**security, "server_cert_fingerprints": [], "trust_dir": str(trust_folder)}
        with pytest.raises(SecurityError, match="not trusted"):
            await OpcUaConnector(config(port, security=via_dir), "agent-1", tmp_path / "agent").run(buf)
        policy = {**security, "policy": "Aes256_Sha256_RsaPss"}
        offer = r"offers no endpoint with Aes256_Sha256_RsaPss.*one it offers"
        with pytest.raises(SecurityError, match=offer):
            await OpcUaConnector(config(port, security=policy), "agent-1", tmp_path / "agent").run(buf)


async def test_staleness_watchdog_resubscribes_a_silent_subscription(tmp_path: Path) -> None:
    port = free_port()
    conn = OpcUaConnector(config(port, stale_after_s=1.5), "agent-1", tmp_path)
    async with (
        server(port) as srv,
        SqliteBuffer(tmp_path / "b.sqlite", "agent-1", commit_interval=0.02) as buf,
    ):
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.1, cap=0.3)))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.3)
        # the server drops the subscription without telling the client: it goes silent
        service = srv._server.iserver.subscription_service  # type: ignore[union-attr]
        await service.delete_subscriptions(list(service.subscriptions))
        await asyncio.sleep(0.2)
        for i in range(1, 4):
            await write_round(srv, i)
        await eventually(lambda: conn.stats.resubscribes >= 1, 10)
        await asyncio.sleep(0.5)
        await write_round(srv, 10)
        await eventually(
            lambda: any(s.signal == "spindle_speed" and s.value == 1010.0 for s in conn_samples(buf)), 10
        )
        await stop(task)
