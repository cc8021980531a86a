"""Events over the API (write scope to post, read scope to query) and HTTPS with a cert and key."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from ingest.auth import Scope
from ingest.testing import IngestProcess, create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from tests.support.certs import self_signed
from zhizao.events import Event, EventSource


def test_events_post_and_query_with_scopes(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    # bound to the producers of both sources it posts (auth.event_producers: test_event_binding.py)
    token = create_token(settings, "analytics", Scope.WRITE, producers=["zhizao-kpi", "zhizao-scoring"])
    writer = {"authorization": f"Bearer {token}"}
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


def test_invalid_events_are_refused_naming_the_field(tmp_path: Path) -> None:
    """A bad asset or an end before the start answers 422 naming the field; nothing is stored.
    A bad event inside a list is reported under the list alternative only (no union noise)."""
    ok = {"id": "ev-1", "source": "kpi", "rule": "oee_low", "asset": "plant/a1/line1",
          "start": "2026-11-23T08:00:00Z"}
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v1/events", json={**ok, "asset": "not a path!!"})
        assert_problem(r, 422, "body.event.asset: 'not a path!!'")
        assert [e["field"] for e in r.json()["errors"]] == ["body.event.asset"]
        r = c.post("/api/v1/events", json={**ok, "end": "2026-11-23T07:59:59Z"})
        assert_problem(r, 422, "body.event.end: end 2026-11-23T07:59:59+00:00 is before start")
        r = c.post("/api/v1/events", json=[ok, {**ok, "id": "ev-2", "asset": "plant/a1/line1/cnc 1"}])
        assert_problem(r, 422)
        assert r.json()["detail"].startswith("body.list.1.asset: ")
        assert [e["field"] for e in r.json()["errors"]] == ["body.list.1.asset"]
        r = c.post("/api/v1/events", json=[ok, {**ok, "id": "ev-3", "end": "2026-11-23T07:00:00Z"}])
        assert [e["field"] for e in r.json()["errors"]] == ["body.list.1.end"]
        assert_problem(c.post("/api/v1/events", json="ev-1"), 422, "one event (a JSON object) or a list")
        assert c.get("/api/v1/events").json()["events"] == []
        assert c.post("/api/v1/events", json=[ok, {**ok, "id": "ev-2", "end": ok["start"]}]).json() == {
            "upserted": 2}


def test_event_model_validates_asset_and_end() -> None:
    start = datetime(2026, 11, 23, 8, tzinfo=UTC)
    for asset in ("plant", "plant/a1/line1/cnc-1"):
        assert Event(id="e", source=EventSource.KPI, rule="r", asset=asset, start=start).asset == asset
    for asset in ("", "not a path!!", "plant//line1", "a/b/c/d/e", "plant/a1/*"):
        with pytest.raises(ValidationError, match="asset"):
            Event(id="e", source=EventSource.KPI, rule="r", asset=asset, start=start)
    with pytest.raises(ValidationError, match=r"end .* is before start"):
        Event(id="e", source=EventSource.KPI, rule="r", asset="plant", start=start,
              end=start - timedelta(seconds=1))


def test_bad_event_errors_name_only_the_shape_sent(tmp_path: Path) -> None:
    """One event or a list is told apart by the JSON shape, so an error names only that
    alternative — not ``body.list[Event]...; body.Event: Input should be a valid dictionary``."""
    ok = {"id": "ev-1", "source": "kpi", "rule": "oee_low", "asset": "plant/a1/line1",
          "start": "2026-11-23T08:00:00Z"}
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v1/events", json=[ok, {**ok, "id": "ev-2", "nope": 1}])
        assert_problem(r, 422, "body.list.1.nope: Extra inputs are not permitted")
        assert [e["field"] for e in r.json()["errors"]] == ["body.list.1.nope"]
        r = c.post("/api/v1/events", json={**ok, "source": "gossip"})
        assert [e["field"] for e in r.json()["errors"]] == ["body.event.source"]
