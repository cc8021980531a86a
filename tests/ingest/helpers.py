"""Small helpers for the ingest HTTP tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ingest.settings import Settings
from ingest.testing import server_settings
from tests.ingest.conftest import M1, T0
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
