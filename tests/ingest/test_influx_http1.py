"""The InfluxDB store's own HTTP/1.1 write client against a real influxd: answers, keep-alive
reuse, a server restart under an idle kept-alive connection, a server that is gone, and HTTPS
with a private CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.settings import InfluxSettings
from ingest.storage.base import BatchKey, SampleFrame, SeriesQuery
from ingest.storage.influxdb.http1 import WritePool
from ingest.storage.influxdb.store import InfluxStore
from tests.ingest.conftest import M1, T0, sample
from tests.support.certs import self_signed
from tests.support.servers import InfluxDB
from zhizao.errors import ConfigError, StoreUnavailable


def _pool(server: InfluxDB, timeout_s: float = 5.0) -> WritePool:
    return WritePool(server.url, headers={}, tls=None, timeout_s=timeout_s)


def _count(server: InfluxDB, measurement: str) -> int:
    doc = json.loads(server.query(f'SELECT count("v") FROM "{measurement}"', server.database))
    series = doc["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def test_writes_reuse_one_connection_and_errors_come_back_with_their_text(influxdb: InfluxDB) -> None:
    pool = _pool(influxdb)
    try:
        params = {"db": influxdb.database, "precision": "u"}
        for i in range(5):
            status, body = await pool.post("/write", params, f"m v={i} {1_000_000 + i}".encode())
            assert (status, body) == (204, b"")
        assert len(pool._idle) == 1  # one kept-alive connection served all five
        status, body = await pool.post("/write", params, b"m v=oops,,, 1")
        assert status == 400 and b"unable to parse" in body
        status, body = await pool.post("/write", {"db": "nope"}, b"m v=1 1")
        assert status == 404 and b"database not found" in body
        status, _ = await pool.post("/write", params, b"m v=9 2000000")
        assert status == 204  # the connection is still usable after error answers
    finally:
        await pool.aclose()
    assert _count(influxdb, "m") == 6


async def test_a_restart_under_an_idle_connection_is_retried_on_a_fresh_one(influxdb: InfluxDB) -> None:
    pool = _pool(influxdb)
    try:
        params = {"db": influxdb.database, "precision": "u"}
        assert (await pool.post("/write", params, b"r v=1 1000000"))[0] == 204
        influxdb.restart()  # same port; the pooled connection is now dead
        assert (await pool.post("/write", params, b"r v=2 2000000"))[0] == 204
    finally:
        await pool.aclose()
    assert _count(influxdb, "r") == 2


async def test_a_server_that_is_gone_raises_store_unavailable(influxdb: InfluxDB) -> None:
    pool = _pool(influxdb)
    influxdb.kill()
    try:
        with pytest.raises(StoreUnavailable, match="InfluxDB write failed"):
            await pool.post("/write", {"db": "zhizao"}, b"m v=1 1")
    finally:
        await pool.aclose()


@contextlib.asynccontextmanager
async def _silent_server() -> AsyncIterator[int]:
    """Accepts connections and reads, never answers."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, family=socket.AF_INET)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_no_answer_within_the_timeout_raises_store_unavailable() -> None:
    async with _silent_server() as port:
        pool = WritePool(f"http://127.0.0.1:{port}", headers={}, tls=None, timeout_s=0.5)
        try:
            with pytest.raises(StoreUnavailable, match=r"no answer within 0\.5 s"):
                await pool.post("/write", {}, b"m v=1 1")
            assert pool._idle == []  # the half-used connection was dropped, not pooled
        finally:
            await pool.aclose()


async def test_https_influxdb_trusted_through_ca_file_and_refused_without(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "influxd")
    server = InfluxDB(tmp_path / "influxdb", tls=(cert, key))
    server.start()
    try:
        assert server.url.startswith("https://")
        frame = SampleFrame.from_samples([sample(M1, "power_kw", 0, 1.5, "kW")])
        trusted = InfluxSettings(url=server.url, database=server.database, ca_file=str(cert))
        async with InfluxStore(trusted) as store:
            assert (await store.write(frame, BatchKey("p", "b-1"))).accepted == 1
            got = await store.query(SeriesQuery(str(M1), T0, T0 + timedelta(seconds=1), ("power_kw",)))
            assert got[0].values() == [1.5]
        async with InfluxStore(InfluxSettings(url=server.url, database=server.database)) as store:
            with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await store.write(frame, BatchKey("p", "b-2"))
        unchecked = InfluxSettings(url=server.url, database=server.database, verify_tls=False)
        async with InfluxStore(unchecked) as store:
            assert (await store.write(frame, BatchKey("p", "b-3"))).accepted == 1
        with pytest.raises(ConfigError, match="ca_file"):
            async with InfluxStore(InfluxSettings(url=server.url, ca_file=str(tmp_path / "missing.pem"))):
                pass
    finally:
        server.kill()
