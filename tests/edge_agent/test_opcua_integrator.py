"""OPC UA connector against a PLC-like asyncua server started by the test (vendor namespace by
URI whose index changes with a restart, numeric ids, arrays, a structure, a ByteString, a sensor
Bad from the start, names that are no signal names): namespace-independent browse cache, one bad
node never stops the others, static mistakes refused by check-config, the timestamp option,
revised intervals logged."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua.server.server import Server

from edge_agent.buffer import SqliteBuffer
from edge_agent.cli import main
from edge_agent.connectors.opcua import OpcUaConnector, OpcUaConnectorConfig
from edge_agent.supervisor import supervise
from tests.edge_agent.test_opcua_connector import conn_samples, drain, stop
from tests.support.ports import free_port
from tests.support.waiting import eventually
from zhizao.backoff import Backoff
from zhizao.model import Sample

ua: Any = importlib.import_module("asyncua.ua")  # untyped use: asyncua's stubs are narrower than it
URI = "urn:vendor:plc"
ASSET = "plant1/a1/line3/press-1"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class Plc:
    """A PLC-like server: ``urn:vendor:plc`` after ``extra`` other namespaces."""

    def __init__(self, port: int, extra: int = 0, added: bool = False) -> None:
        self.port, self.extra, self.added = port, extra, added
        self.server: Any = Server()
        self.nodes: dict[str, Any] = {}
        self.ns = 0

    async def start(self) -> Plc:
        s = self.server
        await s.init()
        s.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/plc")
        s.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        for k in range(self.extra):
            await s.register_namespace(f"urn:other:{k}")
        ns = self.ns = await s.register_namespace(URI)
        plc = await s.nodes.objects.add_object(ua.NodeId("PLC1", ns), ua.QualifiedName("PLC1", ns))
        db = await plc.add_object(ua.NodeId("PLC1.DB10", ns), ua.QualifiedName("DB10", ns))
        add = db.add_variable
        self.nodes["force"] = await add(ua.NodeId(1042, ns), ua.QualifiedName("force", ns), 1.0)
        self.nodes["temps"] = await add(
            ua.NodeId(1043, ns),
            ua.QualifiedName("temps", ns),
            [1.0, 2.0, 3.0],
            varianttype=ua.VariantType.Double,
        )
        self.nodes["range"] = await add(
            ua.NodeId(1044, ns), ua.QualifiedName("range", ns), ua.Range(0.0, 10.0)
        )
        self.nodes["blob"] = await add(
            ua.NodeId(1045, ns),
            ua.QualifiedName("blob", ns),
            b"\x00\x01",
            varianttype=ua.VariantType.ByteString,
        )
        self.nodes["pressure"] = await add(ua.NodeId(1046, ns), ua.QualifiedName("pressure", ns), 5.0)
        self.nodes["Temp 1"] = await add(ua.NodeId(1052, ns), ua.QualifiedName("Temp 1", ns), 20.0)
        self.nodes["温度"] = await add(ua.NodeId(1053, ns), ua.QualifiedName("温度", ns), 21.0)
        if self.added:
            self.nodes["added"] = await add(ua.NodeId(1060, ns), ua.QualifiedName("added", ns), 3.0)
        # a sensor Bad from the start: no value at all
        await self.nodes["pressure"].write_value(
            ua.DataValue(
                ua.Variant(None, ua.VariantType.Null),
                StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
            )
        )
        await s.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()

    async def write(
        self, name: str, value: float, src: datetime | None = None, srv: datetime | None = None
    ) -> None:
        now = datetime.now(UTC)
        await self.nodes[name].write_value(
            ua.DataValue(
                ua.Variant(value, ua.VariantType.Double),
                SourceTimestamp=src or now,
                ServerTimestamp=srv or now,
            )
        )


@contextlib.asynccontextmanager
async def plc(port: int, extra: int = 0, added: bool = False) -> AsyncIterator[Plc]:
    srv = await Plc(port, extra, added).start()
    try:
        yield srv
    finally:
        await srv.stop()


def cfg(port: int, **kw: Any) -> OpcUaConnectorConfig:
    doc: dict[str, Any] = {
        "name": "plc1",
        "endpoint": f"opc.tcp://127.0.0.1:{port}/plc",
        "publishing_interval_ms": 50,
        "sampling_interval_ms": 0,
        "queue_size": 100,
        "request_timeout_s": 2,
    }
    doc.update(kw)
    return OpcUaConnectorConfig.model_validate(doc)


def values(buf: SqliteBuffer, signal: str) -> list[Sample]:
    return [s for s in conn_samples(buf) if s.signal == signal]


async def test_a_server_restart_that_renumbers_namespaces_is_followed_and_new_variables_appear(
    tmp_path: Path,
) -> None:
    """nsu= nodes and browse results are resolved against each session's NamespaceArray: after the
    PLC restarts with its namespace at index 4 instead of 2 everything is collected again, also by
    a restarted agent; a variable added meanwhile is browsed (the server's start time changed)."""
    port = free_port()
    config = cfg(
        port,
        nodes=[{"node_id": f"nsu={URI};i=1042", "asset": ASSET, "signal": "force"}],
        browse=[
            {
                "pattern": "Objects/PLC1/DB10/[af]*",  # force, added
                "asset": ASSET,
                "signal": "db_{2}",
            }
        ],
    )
    async with SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.1, cap=0.5)))
        async with plc(port, extra=0) as srv:
            assert srv.ns == 2
            await eventually(lambda: conn.stats.connected)
            await srv.write("force", 11.0)
            await eventually(lambda: any(s.value == 11.0 for s in values(buf, "force")), what="force 11")
        assert json.loads((tmp_path / "plc1-browse.json").read_text())["tags"], "browse cached"
        async with plc(port, extra=2, added=True) as srv:
            assert srv.ns == 4
            await eventually(lambda: conn.stats.reconnects >= 1 and conn.stats.connected, what="reconnected")
            await asyncio.sleep(0.2)
            await srv.write("force", 12.0)
            await srv.write("added", 5.0)
            await eventually(lambda: any(s.value == 12.0 for s in values(buf, "force")), what="force 12")
            await eventually(lambda: any(s.value == 5.0 for s in values(buf, "db_added")), what="added")
            await stop(task)
            # a restarted agent (same state dir, cache in place) collects too
            conn2 = OpcUaConnector(config, "a1", tmp_path)
            task = asyncio.create_task(supervise(conn2, buf, backoff=Backoff(initial=0.1, cap=0.5)))
            await eventually(lambda: conn2.stats.connected)
            await asyncio.sleep(0.2)
            await srv.write("force", 13.0)
            await srv.write("added", 6.0)
            await eventually(lambda: any(s.value == 13.0 for s in values(buf, "force")), what="force 13")
            await eventually(lambda: any(s.value == 6.0 for s in values(buf, "db_added")), what="added 6")
            await stop(task)
        await drain(buf)
    assert not conn2.skipped_nodes, conn2.skipped_nodes
    assert all(t.node_id.startswith("ns=4;") for t in conn2.tags)


async def test_a_cached_node_the_server_no_longer_knows_makes_the_agent_browse_again(tmp_path: Path) -> None:
    """Same server run (its start time unchanged): a variable replaced by one with another NodeId
    is found by browsing again when the cached node comes back BadNodeIdUnknown."""
    port = free_port()
    config = cfg(port, browse=[{"pattern": "Objects/PLC1/DB10/force", "asset": ASSET, "signal": "{2}"}])
    async with plc(port) as srv, SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await stop(task)
        db = srv.server.get_node(ua.NodeId("PLC1.DB10", srv.ns))
        await srv.server.delete_nodes([srv.nodes["force"]])
        srv.nodes["force"] = await db.add_variable(
            ua.NodeId(2042, srv.ns), ua.QualifiedName("force", srv.ns), 1.0
        )
        conn = OpcUaConnector(config, "a1", tmp_path)  # an agent restart: the cache file is valid
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.2)
        await srv.write("force", 42.0)
        await eventually(lambda: any(s.value == 42.0 for s in values(buf, "force")), what="force 42")
        await stop(task)
    assert [t.node_id for t in conn.tags] == [f"ns={srv.ns};i=2042"]


async def test_one_node_that_cannot_be_read_never_stops_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Browse matches without a valid signal name and an unknown namespace URI are skipped, each
    with one WARNING and counted; the rest is collected. ``rename`` maps such names."""
    port = free_port()
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.opcua")
    config = cfg(
        port,
        nodes=[{"node_id": "nsu=urn:vendor:nope;i=1", "asset": ASSET, "signal": "ghost"}],
        browse=[
            {
                "pattern": "Objects/PLC1/DB10/*",
                "asset": ASSET,
                "signal": "{2}",
                "rename": {"温度": "temperature"},
                "exclude": ["b*"],
            }
        ],
    )
    async with plc(port) as srv, SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(supervise(conn, buf, backoff=Backoff(initial=0.1, cap=0.5)))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.2)
        await srv.write("force", 7.0)
        await srv.write("温度", 22.5)
        await eventually(lambda: any(s.value == 7.0 for s in values(buf, "force")), what="force 7")
        await eventually(lambda: any(s.value == 22.5 for s in values(buf, "temperature")), what="renamed")
        await stop(task)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("'Temp 1' is not a valid signal name" in w for w in warnings) == 1, warnings
    assert sum("urn:vendor:nope" in w for w in warnings) == 1, warnings
    assert conn.stats.vanished_nodes == 2 and len(conn.skipped_nodes) == 2
    assert not any("温度" in w for w in warnings)
    assert "blob" not in {t.signal for t in conn.tags} and "temperature" in {t.signal for t in conn.tags}


def _bad(doc: dict[str, Any]) -> str:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        OpcUaConnectorConfig.model_validate({"endpoint": "opc.tcp://127.0.0.1:4840", **doc})
    return str(info.value)


def test_static_node_and_template_mistakes_are_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "not an OPC UA NodeId" in _bad(
        {"nodes": [{"node_id": "ns=2;x=garbage", "asset": ASSET, "signal": "g"}]}
    )
    assert "not an OPC UA NodeId" in _bad({"nodes": [{"node_id": "garbage", "asset": ASSET, "signal": "g"}]})
    assert "give asset and signal" in _bad({"nodes": [{"node_id": "ns=2;i=5"}]})
    assert "give asset and signal" in _bad({"nodes": [{"node_id": "ns=2;s=a/b/c"}]})
    assert "'1st_stage temp' is not a valid signal name" in _bad(
        {"nodes": [{"node_id": f"nsu={URI};s=plant1/a1/line3/press-1/1st_stage temp"}]}
    )
    err = _bad({"browse": [{"pattern": "Objects/a/*", "asset": "{0}/{1}", "signal": "{7}"}]})
    assert "must have 4 levels" in err and "has 2 levels below Objects, {0} to {1}" in err
    assert "not a valid signal name" in _bad(
        {"browse": [{"pattern": "Objects/a/b/c/d/*", "signal": "x {4}"}]}
    )
    assert "rename" in _bad({"browse": [{"pattern": "Objects/a/b/c/d/*", "rename": {"Temp 1": "1temp"}}]})
    dup = _bad(
        {
            "nodes": [
                {"node_id": "ns=2;i=5", "asset": ASSET, "signal": "a"},
                {"node_id": "ns=2;i=5", "asset": ASSET, "signal": "b"},
            ]
        }
    )
    assert "nodes[0] and nodes[1] both read node 'ns=2;i=5'" in dup
    path = tmp_path / "agent.toml"
    path.write_text(
        '[agent]\nid = "cell-1"\nstate_dir = "."\n[[connectors]]\ntype = "opcua"\n'
        'endpoint = "opc.tcp://127.0.0.1:4840"\n'
        'nodes = [{ node_id = "ns=2;s=a/b/c/d/e" },\n'
        '  { node_id = "ns=2;x=garbage", asset = "p/a/l/m", signal = "s" }]\n'
        '[uplink]\ntype = "http"\nurl = "http://127.0.0.1:8080"\ntoken = "t"\n'
    )
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "connectors[0].opcua.nodes[1]" in err and "ns=2;x=garbage" in err


async def test_arrays_structures_bytestrings_and_a_sensor_bad_from_the_start_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.WARNING, logger="edge_agent.connectors.opcua")
    config = cfg(
        port,
        nodes=[
            {"node_id": f"nsu={URI};i={i}", "asset": ASSET, "signal": name}
            for i, name in (
                (1042, "force"),
                (1043, "temps"),
                (1044, "range"),
                (1045, "blob"),
                (1046, "pressure"),
            )
        ],
    )
    async with plc(port) as srv, SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.2)
        for i in range(3):
            await srv.nodes["temps"].write_value(
                ua.DataValue(ua.Variant([i, 1.0, 2.0], ua.VariantType.Double))
            )
            await srv.write("force", float(i))
            await asyncio.sleep(0.1)
        await eventually(lambda: conn.stats.skipped["unsupported_type"] >= 5, what="unsupported counted")
        await eventually(lambda: conn.stats.skipped["no_value"] >= 1, what="no value counted")
        await stop(task)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for what in ("Double[3]", "ExtensionObject(Range)", "ByteString"):
        assert sum(what in w and "unsupported_type" in w for w in warnings) == 1, (what, warnings)
    assert sum("BadSensorFailure" in w and "pressure" in w for w in warnings) == 1, warnings


@pytest.mark.parametrize("mode", ["source", "server", "receive"])
async def test_timestamp_option(tmp_path: Path, mode: str) -> None:
    port = free_port()
    src, srv_ts = T0, T0 + timedelta(seconds=30)
    config = cfg(
        port, timestamp=mode, nodes=[{"node_id": f"nsu={URI};i=1042", "asset": ASSET, "signal": "force"}]
    )
    async with plc(port) as srv, SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await asyncio.sleep(0.2)
        before = datetime.now(UTC)
        await srv.write("force", 99.0, src, srv_ts)
        await eventually(lambda: any(s.value == 99.0 for s in values(buf, "force")), what="force 99")
        await srv.write("force", 100.0, src + timedelta(seconds=1), srv_ts)  # same server time: still after
        await eventually(lambda: any(s.value == 100.0 for s in values(buf, "force")), what="force 100")
        await stop(task)
        got = {s.value: s.ts for s in values(buf, "force")}
    if mode == "source":
        assert got[99.0] == src and got[100.0] == src + timedelta(seconds=1)
    else:  # asyncua's server stamps ServerTimestamp itself when a value is written: now, too
        assert before - timedelta(seconds=1) <= got[99.0] < got[100.0] <= datetime.now(UTC)


async def test_a_revised_sampling_interval_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="edge_agent.connectors.opcua")
    config = cfg(
        port, sampling_interval_ms=10, nodes=[{"node_id": f"nsu={URI};i=1042", "asset": ASSET, "signal": "f"}]
    )
    async with plc(port), SqliteBuffer(tmp_path / "b.sqlite", "a1", commit_interval=0.02) as buf:
        conn = OpcUaConnector(config, "a1", tmp_path)
        task = asyncio.create_task(conn.run(buf))
        await eventually(lambda: conn.stats.connected)
        await stop(task)
    lines = [r.getMessage() for r in caplog.records if "revised" in r.getMessage()]
    assert lines == [
        "OPC UA plc1: the server revised the sampling interval: requested 10 ms, revised 50 ms "
        "on 1 of 1 nodes"
    ]


def test_timestamp_server_and_receive_on_real_datavalues() -> None:
    """The converter on asyncua DataValues: ``server`` takes the ServerTimestamp (strictly increasing
    per node), ``receive`` the time of receipt; a repeat is still recognised by the source time."""
    from edge_agent.connectors.opcua.convert import Converter
    from zhizao.model import AssetPath

    def dv(value: float, src: datetime, srv: datetime) -> Any:
        return ua.DataValue(
            ua.Variant(value, ua.VariantType.Double), SourceTimestamp=src, ServerTimestamp=srv
        )

    srv_ts = T0 + timedelta(seconds=30)
    conv = Converter([AssetPath.parse(ASSET)], ["force"], [None], timestamp="server")
    a = conv.sample(0, dv(1.0, T0, srv_ts))
    b = conv.sample(0, dv(2.0, T0 + timedelta(seconds=1), srv_ts))
    assert a is not None and b is not None
    assert (a.ts, b.ts) == (srv_ts, srv_ts + timedelta(microseconds=1))
    assert conv.sample(0, dv(2.0, T0 + timedelta(seconds=1), srv_ts + timedelta(seconds=5))) is None  # repeat
    conv = Converter([AssetPath.parse(ASSET)], ["force"], [None], timestamp="receive")
    before = datetime.now(UTC)
    c = conv.sample(0, dv(1.0, T0, srv_ts))
    assert c is not None and before <= c.ts <= datetime.now(UTC)
