"""``/readyz`` needs no token and tells it only ready / not ready (security review follow-up): it
used to answer anyone with the store's error — InfluxDB's messages, which may name hosts. The
reason goes to the log, once per change (probes come every few seconds), and to read tokens.

Against a real ingest (uvicorn) and a real ``influxd``: one with authentication on and a wrong
password configured (InfluxDB's own error text), one stopped and started again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from ingest.auth import Scope
from ingest.testing import create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem
from tests.ingest.test_influx_auth import USER, AuthInfluxDB
from tests.support.servers import InfluxDB

SHORT = "not ready (the reason is in ingest's log)"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _not_ready(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ingest.api.health" and r.levelno == logging.WARNING]


def test_readyz_tells_the_stores_error_only_to_read_tokens(
        tmp_path: Path, auth_influxdb: AuthInfluxDB, caplog: pytest.LogCaptureFixture) -> None:
    """InfluxDB refuses ingest's credentials: without a token — or with one that is unknown or
    lacks the read scope, which is not refused — the 503 says only "not ready", with Retry-After;
    a read or admin token gets the reason; the log has it once for all these probes."""
    settings = server_settings(tmp_path, auth=True, backend="influxdb")
    settings.storage.influxdb.url = auth_influxdb.url
    settings.storage.influxdb.username = USER
    settings.storage.influxdb.password = "wrong"
    reader = create_token(settings, "grafana", Scope.READ)
    admin = create_token(settings, "ops", Scope.ADMIN)
    writer = create_token(settings, "agent-1", Scope.WRITE)
    caplog.set_level(logging.INFO, logger="ingest")
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        for headers in ({}, _bearer(writer), _bearer("zz_nope_nope"), {"authorization": "Basic !!"}):
            r = c.get("/readyz", headers=headers)
            assert_problem(r, 503)
            assert r.json()["detail"] == SHORT, (headers, r.text)
            assert r.headers["retry-after"] == "5"
            for leak in ("InfluxDB", "401", "credentials", "authorization failed", "127.0.0.1"):
                assert leak not in r.text, (leak, r.text)
        for token in (reader, admin):
            r = c.get("/readyz", headers=_bearer(token))
            assert_problem(r, 503, "store influxdb is not reachable",
                           "refuses the configured credentials (401)")
            assert r.headers["retry-after"] == "5"
    logged = _not_ready(caplog)
    assert len(logged) == 1, logged
    assert "refuses the configured credentials (401)" in logged[0]


def test_readyz_logs_each_change_of_state_once(
        tmp_path: Path, influxdb: InfluxDB, caplog: pytest.LogCaptureFixture) -> None:
    """Ready, InfluxDB stopped (three probes: one WARNING with the reason), started (two probes:
    one INFO), stopped again (one more WARNING); an unauthenticated 200 is unchanged."""
    settings = server_settings(tmp_path, auth=True, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    settings.storage.influxdb.timeout_s = 2.0
    caplog.set_level(logging.INFO, logger="ingest")
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready", "store": "influxdb"}, r.text
        influxdb.stop()
        for _ in range(3):
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["detail"] == SHORT, r.text
        assert len(_not_ready(caplog)) == 1 and "InfluxDB unreachable" in _not_ready(caplog)[0]
        influxdb.start()
        for _ in range(2):
            assert c.get("/readyz").status_code == 200
        influxdb.stop()
        assert c.get("/readyz").status_code == 503
        influxdb.start()
    health = [r for r in caplog.records if r.name == "ingest.api.health"]
    assert [r.levelno for r in health] == [logging.WARNING, logging.INFO, logging.WARNING], \
        [r.getMessage() for r in health]
    assert "ready again" in health[1].getMessage()
