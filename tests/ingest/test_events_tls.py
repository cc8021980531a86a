"""Events over the API (write scope to post, read scope to query) and HTTPS with a cert and key."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from ingest.auth import Scope
from ingest.testing import IngestProcess, create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from tests.support.certs import self_signed


def test_events_post_and_query_with_scopes(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    writer = {"authorization": f"Bearer {create_token(settings, 'kpi-alerts', Scope.WRITE)}"}
    reader = {"authorization": f"Bearer {create_token(settings, 'grafana', Scope.READ)}"}
    opened = {"id": "kpi:oee:line1:2026-11-23T08", "source": "kpi", "rule": "oee_below_60",
              "asset": "plant/a1/line1", "severity": "critical", "start": "2026-11-23T08:00:00Z",
              "value": 0.42, "threshold": 0.6, "message": "OEE 42 % < 60 %"}
    with run_server(settings) as url, httpx.Client(base_url=url) as c:
        assert_problem(c.post("/api/v1/events", json=opened, headers=reader), 403)
        assert c.post("/api/v1/events", json=opened, headers=writer).json() == {"upserted": 1}
        resolved = {**opened, "state": "resolved", "end": "2026-11-23T08:40:00Z", "value": 0.65}
        anomaly = {"id": "anomaly:cnc-1:1", "source": "anomaly", "rule": "iforest-v1",
                   "asset": "plant/a1/line1/cnc-1", "start": "2026-11-23T09:00:00Z", "value": 0.93,
                   "contributors": [{"signal": "vibration_rms", "weight": 0.7}]}
        assert c.post("/api/v1/events", json=[resolved, anomaly], headers=writer).json() == {"upserted": 2}
        got = c.get("/api/v1/events", params={"asset": "plant/a1/line1"}, headers=reader).json()["events"]
        assert [e["id"] for e in got] == ["anomaly:cnc-1:1", "kpi:oee:line1:2026-11-23T08"]
        assert got[1]["state"] == "resolved" and got[1]["value"] == 0.65
        assert got[0]["contributors"] == [{"signal": "vibration_rms", "weight": 0.7}]
        only_open = c.get("/api/v1/events", params={"state": "open"}, headers=reader).json()["events"]
        assert [e["id"] for e in only_open] == ["anomaly:cnc-1:1"]
        assert_problem(c.get("/api/v1/events", params={"start": "2026-11-23T08:00:00"}, headers=reader), 422,
                       "UTC offset")
        bad = c.post("/api/v1/events", json={**opened, "source": "gossip"}, headers=writer)
        assert_problem(bad, 422, "source")
        assert_problem(c.get("/api/v1/events"), 401)


def test_https_with_cert_and_key(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "ingest")
    config = tmp_path / "ingest.toml"
    config.write_text(f'[storage.duckdb]\npath = "{tmp_path / "z.duckdb"}"\n'
                      f'[auth]\nenabled = false\ntokens_file = "{tmp_path / "tokens.json"}"\n'
                      f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    proc = IngestProcess(config, scheme="https", verify=str(cert))
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, verify=ssl.create_default_context(cafile=str(cert))) as c:
            assert post(c, batch("b-1")).status_code == 200
            assert stored_count(c) == 10
        assert proc.url.startswith("https://")
        try:
            httpx.get(proc.url.replace("https://", "http://") + "/healthz", timeout=2)
            plain_http_works = True
        except httpx.HTTPError:
            plain_http_works = False
        assert not plain_http_works
    finally:
        proc.kill()
