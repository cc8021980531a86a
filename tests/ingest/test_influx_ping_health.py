"""InfluxDB's ``/ping``, ``/health`` and ``/ready`` (review 82: they were 404 — influxdb-client's
``ping()`` False, ``health()`` failed, ``ready()``/``version()`` 404; the 1.x client's and
node-influx's ``ping()`` failed; tools' "test connection" too). Shapes as InfluxDB 1.x/2.x answer
them, no token needed (auth on), over real uvicorn; ``/health`` fails (503) when the store does not
answer, with ``/readyz``'s probe. (influxdb-client is not a test dependency: HTTP shapes only.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ingest.testing import run_server, server_settings
from tests.support.servers import InfluxDB
from zhizao import __version__


def test_ping_health_ready_answer_without_a_token(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/api/v1/latest", params={"asset": "a/b/c/d"}).status_code == 401  # auth is on
        for method in ("GET", "HEAD"):
            r = c.request(method, "/ping")
            assert r.status_code == 204, (method, r.text)
            assert r.headers["x-influxdb-version"] == f"zhizao-ingest-{__version__}"
            assert r.headers["x-influxdb-build"] == "OSS"
            assert r.content == b""
        r = c.get("/ping", params={"verbose": "true"})
        assert r.status_code == 200 and r.json() == {"version": f"zhizao-ingest-{__version__}"}

        r = c.get("/health")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == {"name": "zhizao-ingest", "message": "ready for queries and writes",
                            "status": "pass", "checks": [], "version": f"zhizao-ingest-{__version__}"}

        r = c.get("/ready")
        assert r.status_code == 200
        doc = r.json()
        assert doc["status"] == "ready" and set(doc) == {"status", "started", "up"}
        started = datetime.fromisoformat(doc["started"])
        assert timedelta(0) <= datetime.now(UTC) - started < timedelta(minutes=5)
        assert re.fullmatch(r"(\d+h)?(\d+m)?\d+(\.\d+)?s", doc["up"]), doc["up"]


def test_health_fails_when_the_store_does_not_answer(tmp_path: Path, influxdb: InfluxDB) -> None:
    """InfluxDB backend, influxd stopped: 503 ``"status": "fail"`` with Retry-After; the store's
    error only for a read token (as ``/readyz``); ``/ping`` still 204 (the process is up)."""
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 2.0
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health").json()["status"] == "pass"
        influxdb.stop()
        try:
            r = c.get("/health")
            assert r.status_code == 503, r.text
            doc = r.json()
            assert doc["status"] == "fail" and doc["name"] == "zhizao-ingest" and doc["checks"] == []
            assert "not reachable" in doc["message"]  # auth off: everyone may read
            assert int(r.headers["retry-after"]) >= 1
            assert c.get("/ping").status_code == 204
        finally:
            influxdb.start()
        assert c.get("/health").json()["status"] == "pass"


def test_go_durations() -> None:
    from ingest.api.health import _go_duration

    assert _go_duration(14.25) == "14.25s"
    assert _go_duration(0.0) == "0s"
    assert _go_duration(65.5) == "1m5.5s"
    assert _go_duration(3600 + 120 + 3) == "1h2m3s"
