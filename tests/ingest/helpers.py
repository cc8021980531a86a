"""Small helpers for the ingest HTTP tests."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ingest.settings import Settings
from ingest.testing import server_settings
from tests.ingest.conftest import M1, M2, T0
from tests.support.servers import InfluxDB
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch


def batch(batch_id: str = "b-1", n: int = 10, producer: str = "agent-1", signal: str = "power_kw") -> Batch:
    samples = tuple(Sample(M1, signal, T0 + timedelta(seconds=i), float(i), "kW") for i in range(n))
    return Batch(producer, batch_id, 1, samples)


def post(client: httpx.Client, b: Batch, *, gzip: bool = False, **headers: str) -> httpx.Response:
    hdrs = {"content-type": "application/json", **headers}
    if gzip:
        hdrs["content-encoding"] = "gzip"
    return client.post("/api/v1/batches", content=encode_batch(b, compress=gzip), headers=hdrs)


def stored_count(client: httpx.Client, asset: str = "plant", **headers: str) -> int:
    """Number of samples stored under ``asset`` (all time)."""
    r = client.get("/api/v1/series", params={
        "asset": asset, "start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}, headers=headers)
    assert r.status_code == 200, r.text
    return sum(len(s["values"]) for s in r.json()["series"])


def assert_problem(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    for f in fragments:
        assert f in doc["detail"], (f, doc["detail"])


def auth_settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Ingest settings with auth on, on ``backend`` (``influxdb``: the test's ``influxdb`` fixture)."""
    settings = server_settings(tmp_path, auth=True, backend=backend)
    if backend == "influxdb":
        influxdb: InfluxDB = request.getfixturevalue("influxdb")
        settings.storage.influxdb.url = influxdb.url
    return settings


def prime_field_type_conflict(server: InfluxDB) -> None:
    """Another client writes ``vtype`` as a float into ``server``'s shard of ``T0``: from then on
    influxd refuses (400 "field type conflict") every point there whose ``vtype`` is a string — an
    integer sample's (:func:`conflicting`) — and stores float samples (which carry no ``vtype``)."""
    t_us = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    line = f"telemetry,area=x,line=x,machine=x,signal=x,site=x vtype=1 {t_us}"
    req = urllib.request.Request(f"{server.url}/write?db={server.database}&precision=u", method="POST",
                                 data=line.encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def conflicting(batch_id: str, producer: str = "attacker", n: int = 1) -> Batch:
    """A batch an influxd primed by :func:`prime_field_type_conflict` refuses whole: integer samples."""
    return Batch(producer, batch_id, 1, tuple(Sample(M2, "parts", T0 + timedelta(seconds=i), i, None)
                                              for i in range(n)))
