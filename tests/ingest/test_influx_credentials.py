"""The InfluxDB password never reaches a log (security review M2).

It used to travel as ``u=``/``p=`` in every request's URL, which httpx logs at INFO — and
``zhizao ingest`` never quieted httpx: the password was in ingest's log once per request. Now
InfluxDB 1.x credentials go as HTTP Basic auth (influxd 1.x accepts it: proven here against a real
``influxd`` with authentication on), and ``zhizao ingest`` keeps httpx at WARNING.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest

from ingest.testing import IngestProcess, run_server, server_settings
from tests.ingest.helpers import batch, post, stored_count
from tests.ingest.test_influx_auth import PASSWORD, USER, AuthInfluxDB
from zhizao.wire import encode_batch

EVENT = {"id": "ev-1", "source": "kpi", "rule": "oee_low", "asset": "plant/a1/line1/cnc-1",
         "start": "2026-11-23T08:00:00Z"}


def _secrets() -> list[str]:
    return [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]


def _exercise(c: httpx.Client) -> None:
    """Every kind of request ingest makes to InfluxDB: ping, writes (single, bulk), dedup, reads,
    events."""
    assert c.get("/readyz").status_code == 200
    assert post(c, batch("b-1")).status_code == 200
    assert post(c, batch("b-1")).json()["duplicate"] is True
    r = c.post("/api/v1/batches/bulk", content=encode_batch(batch("b-2", signal="temp")),
               headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["errors"] == 0, r.text
    assert stored_count(c) == 20
    assert c.get("/api/v1/latest", params={"asset": "plant/a1/line1/cnc-1"}).status_code == 200
    assert c.get("/api/v1/catalogue").status_code == 200
    assert c.post("/api/v1/events", json=EVENT).json() == {"upserted": 1}
    assert [e["id"] for e in c.get("/api/v1/events").json()["events"]] == ["ev-1"]


def test_no_log_record_at_any_level_holds_the_password(tmp_path: Path, auth_influxdb: AuthInfluxDB,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = auth_influxdb.url
    settings.storage.influxdb.username = USER
    settings.storage.influxdb.password = PASSWORD
    caplog.set_level(1)  # everything, from every logger (httpx, httpcore, uvicorn, ingest) — even
    for name in ("httpx", "httpcore"):  # from those another test of this process quieted
        caplog.set_level(1, logger=name)
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        _exercise(c)
    requests = [r for r in caplog.records if r.name == "httpx"]
    assert requests, "httpx's request lines were expected at DEBUG/INFO here (the check would be void)"
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for secret in _secrets():
            assert secret not in text, (record.name, record.levelname, text)
    assert "p=" not in " ".join(r.getMessage() for r in requests)


def test_basic_auth_is_what_influxd_checks(tmp_path: Path, auth_influxdb: AuthInfluxDB) -> None:
    """A wrong password is refused (the credentials are really used, not ignored): /readyz 503,
    writes 503, never 422 — a 401 is an outage to fix, not the data's fault."""
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = auth_influxdb.url
    settings.storage.influxdb.username = USER
    settings.storage.influxdb.password = "wrong"
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/readyz").status_code == 503
        r = post(c, batch("b-1"))
        assert r.status_code == 503 and "401" in r.json()["detail"], r.text
        for secret in ("wrong", base64.b64encode(f"{USER}:wrong".encode()).decode()):
            assert secret not in r.text


def test_zhizao_ingest_log_has_no_request_lines_nor_password(tmp_path: Path,
                                                            auth_influxdb: AuthInfluxDB) -> None:
    """The real command: its log (stdout and stderr) at the default level, INFO."""
    config = tmp_path / "ingest.toml"
    config.write_text(
        "[auth]\nenabled = false\n"
        f'[storage]\nbackend = "influxdb"\n[storage.influxdb]\nurl = "{auth_influxdb.url}"\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n')
    ingest = IngestProcess(config, log_path=tmp_path / "ingest.log")
    ingest.start()
    try:
        with httpx.Client(base_url=ingest.url, timeout=30) as c:
            _exercise(c)
    finally:
        ingest.stop()
    text = (tmp_path / "ingest.log").read_text()
    assert "Uvicorn running" in text or "Application startup complete" in text, text
    for secret in _secrets():
        assert secret not in text, text
    assert "HTTP Request:" not in text, text  # httpx quieted: one line per request is noise, and leaked


@pytest.mark.parametrize("entry", ["kpi-feed", "serve"])
def test_analytics_services_quiet_httpx(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``zhizao analytics kpi-feed`` and ``zhizao analytics serve`` talk to ingest or InfluxDB
    with httpx: they keep it at WARNING, as the agent, the gateway and ingest do."""
    from analytics import cli
    from analytics.kpi_feed import __main__ as feed
    from analytics.scoring.service import runner

    seen: list[int] = []

    async def run(_cfg: object) -> None:  # its own level: pytest's handlers make basicConfig a no-op
        seen.append(logging.getLogger("httpx").level)

    monkeypatch.setattr(feed, "serve", run)
    monkeypatch.setattr(runner, "serve", run)
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.NOTSET)
    root = Path(__file__).resolve().parents[2]
    config = root / ("analytics/kpi_feed/sample.toml" if entry == "kpi-feed"
                     else "analytics/scoring/service/sample.toml")
    assert cli.main([entry, "--config", str(config)]) == 0
    assert seen == [logging.WARNING]
