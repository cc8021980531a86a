"""A batch whose InfluxDB write outlives ingest's ``write_timeout_s`` (influxd stopped with SIGSTOP:
slow, not down): its senders get 503 problem+json with Retry-After, and resends of the batch
join the write already queued instead of queueing copies. Found by review 47: a resend joining
the timed-out write got a bare 500 (the first waiter's cancellation cancelled the shared write),
and every resend queued another copy (5 sends of a 10-sample batch left 40 points queued, all to
be written to an InfluxDB already too slow). Real uvicorn and influxd."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
from fastapi import FastAPI

from ingest.app import create_app
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import batch, stored_count
from tests.support.servers import InfluxDB
from zhizao.wire import encode_batch

JSON = {"content-type": "application/json"}


def _stalled_ingest(tmp_path: Path, influxdb: InfluxDB) -> tuple[FastAPI, AbstractContextManager[str]]:
    settings = server_settings(tmp_path)
    settings.storage.backend = "influxdb"
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 60
    settings.storage.write_timeout_s = 1
    app = create_app(settings)
    return app, run_server(settings, app=app)


class _Stopped:
    """influxd stopped (SIGSTOP) inside the block: it takes connections and answers nothing."""

    def __init__(self, influxdb: InfluxDB) -> None:
        assert influxdb.process is not None
        self.process = influxdb.process

    def __enter__(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGCONT)


def test_a_resend_joining_a_timed_out_write_is_answered_503(tmp_path: Path, influxdb: InfluxDB) -> None:
    _, server = _stalled_ingest(tmp_path, influxdb)
    with server as url:
        body = encode_batch(batch("k1", n=5))

        async def go() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                async def send(delay: float) -> httpx.Response:
                    await asyncio.sleep(delay)
                    return await c.post("/api/v1/batches", content=body, headers=JSON)
                a, b = await asyncio.gather(send(0), send(0.4))
                return a, b

        with _Stopped(influxdb):
            a, b = asyncio.run(go())
        for r in (a, b):
            assert r.status_code == 503, (r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" in r.headers


def test_resends_of_a_timed_out_batch_join_its_write_and_it_is_stored_once(
    tmp_path: Path, influxdb: InfluxDB
) -> None:
    app, server = _stalled_ingest(tmp_path, influxdb)
    with server as url, httpx.Client(base_url=url, timeout=30) as c:
        body = encode_batch(batch("k2", n=10))
        with _Stopped(influxdb):
            for _ in range(5):
                r = c.post("/api/v1/batches", content=body, headers=JSON)
                assert r.status_code == 503, r.text
            queued = app.state.service.store._queued_points
        assert queued <= 10, f"{queued} points queued for one 10-sample batch sent 5 times"
        for _ in range(100):  # influxd resumed: the queued write lands, the resend is a duplicate
            r = c.post("/api/v1/batches", content=body, headers=JSON)
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert stored_count(c) == 10
