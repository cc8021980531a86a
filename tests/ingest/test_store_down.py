"""Store down or slow: 503 with Retry-After, nothing acknowledged; writes succeed once it is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from tests.support.servers import InfluxDB


def test_influxdb_down_gives_503_then_recovers(tmp_path: Path, influxdb: InfluxDB) -> None:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 2.0
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert post(c, batch("b-1")).status_code == 200
        influxdb.stop()
        r = post(c, batch("b-2", signal="temp"))
        assert_problem(r, 503, "nothing was stored")
        assert int(r.headers["retry-after"]) >= 1
        # a read says it could not read, not that nothing was stored
        for path, params in (("/api/v1/latest", {"asset": "plant/a1/line1/cnc-1"}), ("/api/v1/events", {})):
            r = c.get(path, params=params)
            assert_problem(r, 503, "storage is unavailable, cannot read")
            assert "stored" not in r.json()["detail"] and int(r.headers["retry-after"]) >= 1
        assert_problem(c.get("/readyz"), 503, "not reachable")
        influxdb.start()
        assert c.get("/readyz").status_code == 200
        # the refused batch was not stored: only b-1 is there
        assert stored_count(c) == 10
        r = post(c, batch("b-2", signal="temp"))
        assert r.status_code == 200 and r.json()["duplicate"] is False
        assert post(c, batch("b-2", signal="temp")).json()["duplicate"] is True
        assert stored_count(c) == 20
        assert 'zhizao_ingest_store_errors_total{operation="write"} 1.0' in c.get("/metrics").text


def test_slow_duckdb_gives_503_and_the_resend_is_stored_once(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    settings.storage.write_timeout_s = 0.3
    store = DuckDBStore(tmp_path / "slow.duckdb")
    asyncio.run(store.__aenter__())
    try:
        with run_server(settings, store=store) as url, httpx.Client(base_url=url, timeout=10) as c:
            blocker = store._writer.submit(time.sleep, 1.0)  # the single writer is busy
            r = post(c, batch("b-1"))
            assert_problem(r, 503, "did not commit within 0.3 s")
            assert r.headers["retry-after"] == "5"
            blocker.result()
            # the client retries as told; the first attempt committed late, so the resend is
            # recognised and nothing is doubled (the machine may be loaded: retry up to 20 s)
            deadline = time.monotonic() + 20
            while (again := post(c, batch("b-1"))).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert again.status_code == 200, again.text
            assert again.json()["accepted"] == 10
            assert stored_count(c) == 10
    finally:
        asyncio.run(store.__aexit__(None, None, None))


def test_unexpected_store_error_answers_500_and_never_hangs(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = server_settings(tmp_path)
    store = DuckDBStore(tmp_path / "bug.duckdb")
    asyncio.run(store.__aenter__())
    try:
        with run_server(settings, store=store) as url, httpx.Client(base_url=url, timeout=10) as c:
            def broken(group: object) -> object:
                raise RuntimeError("simulated bug")
            monkeypatch.setattr(store.writer, "commit", broken)
            assert_problem(post(c, batch("b-1")), 500, "RuntimeError", "nothing was acknowledged")
            monkeypatch.undo()
            assert post(c, batch("b-1")).json()["duplicate"] is False  # nothing was stored before
            assert stored_count(c) == 10
    finally:
        asyncio.run(store.__aexit__(None, None, None))
