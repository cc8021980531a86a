"""Write tokens are bound to the events they may post, as to the batches they may write (security
review follow-up): ``POST /api/v1/events`` used to take any event from any write token, so an edge
agent's token could open, overwrite or resolve the scoring service's anomaly episodes.

A bound token may post an event when it may write as one of the producers of the event's
``source`` (``auth.event_producers``: by default ``anomaly`` → ``zhizao-scoring``, ``kpi`` →
``zhizao-kpi``) and the event's id begins with ``<source>:``; forwarders and tokens from before
bindings may post any (``ingest/eventbinding.py``). Every test runs a real ingest (uvicorn) on a
real store: DuckDB, and InfluxDB (``influxd``) for the attack itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.auth import Scope
from ingest.cli import main
from ingest.settings import Settings
from ingest.testing import create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, auth_settings
from zhizao.config import validate
from zhizao.errors import ConfigError
from zhizao.events import EventSource

ANOMALY: dict[str, Any] = {
    "id": "anomaly:iforest-v3:plant/a1/line1/cnc-1:20261123T080000.000000Z", "source": "anomaly",
    "rule": "iforest-v3", "asset": "plant/a1/line1/cnc-1", "severity": "critical",
    "start": "2026-11-23T08:00:00Z", "value": 0.97, "peak": 0.97, "threshold": 0.5}
KPI: dict[str, Any] = {
    "id": "kpi:oee-low:plant/a1/line1:20261123T080000.000000Z", "source": "kpi", "rule": "oee-low",
    "asset": "plant/a1/line1", "start": "2026-11-23T08:00:00Z", "value": 0.42, "threshold": 0.6}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _events(c: httpx.Client, reader: str) -> dict[str, dict[str, Any]]:
    r = c.get("/api/v1/events", headers=_bearer(reader))
    assert r.status_code == 200, r.text
    return {e["id"]: e for e in r.json()["events"]}


_settings = auth_settings


def _refused(r: httpx.Response, field: str, *fragments: str) -> None:
    """A 403 problem naming ``field`` (in ``field`` and the detail) and the token's binding."""
    assert_problem(r, 403, field, "writes as: ", "Nothing was stored", *fragments)
    doc = r.json()
    assert doc["field"] == field and doc["binding"] in doc["detail"], doc


@pytest.mark.parametrize("backend", ["duckdb", "influxdb"])
def test_an_agents_token_cannot_open_or_resolve_anomaly_episodes(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """The reproduction: an edge agent's write token resolves the scoring service's open critical
    episode (same id, ``state: resolved``) and opens a forged one. Refused 403 naming
    ``body.event.source``/``body.list.0.source`` and the token's binding; the stored episode is
    unchanged, nothing forged stored. The scoring service's token as deploy/ issues it
    (``--producer zhizao-scoring``) still posts its events."""
    settings = _settings(tmp_path, backend, request)
    scoring = create_token(settings, "scoring", Scope.READ, Scope.WRITE, producers=["zhizao-scoring"])
    agent = create_token(settings, "agent-7", Scope.WRITE)
    reader = create_token(settings, "grafana", Scope.READ)
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/events", json=[ANOMALY], headers=_bearer(scoring))
        assert r.status_code == 200 and r.json() == {"upserted": 1}, r.text
        resolved = {**ANOMALY, "state": "resolved", "end": "2026-11-23T08:05:00Z"}
        _refused(c.post("/api/v1/events", json=resolved, headers=_bearer(agent)), "body.event.source",
                 "agent-7", "'anomaly'", "producers agent-7", "--producer zhizao-scoring")
        forged = {**ANOMALY, "id": "anomaly:iforest-v3:plant/a1/line1/cnc-2:1",
                  "asset": "plant/a1/line1/cnc-2"}
        _refused(c.post("/api/v1/events", json=[forged, resolved], headers=_bearer(agent)),
                 "body.list.0.source")
        stored = _events(c, reader)
        assert set(stored) == {ANOMALY["id"]} and stored[ANOMALY["id"]]["state"] == "open", stored
        # the scoring service resolves its own episode
        r = c.post("/api/v1/events", json=resolved, headers=_bearer(scoring))
        assert r.status_code == 200, r.text
        assert _events(c, reader)[ANOMALY["id"]]["state"] == "resolved"
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_requests_rejected_total{reason="event_source_not_allowed",status="403"} 2.0' \
            in metrics


def test_event_sources_and_ids_follow_the_tokens_binding(tmp_path: Path) -> None:
    """Which token posts what: the KPI alerter's (``--producer zhizao-kpi``) kpi events only; the
    scoring service's anomaly events only; ids in the source's namespace (``<source>:``), so the
    one cannot overwrite the other's episodes; one refused event refuses the whole list; a
    forwarder posts any; ``admin`` is bound as ``write`` is; ``auth.event_producers`` changes who
    emits a source (an empty list: forwarders only)."""
    settings = server_settings(tmp_path, auth=True)
    settings.auth.event_producers.system = ["ops"]
    settings.auth.event_producers.kpi = []
    kpi = create_token(settings, "kpi-alerts", Scope.WRITE, producers=["zhizao-kpi"])
    scoring = create_token(settings, "scoring", Scope.WRITE, producers=["zhizao-scoring"])
    gateway = create_token(settings, "gateway", Scope.WRITE, forwarder=True)
    ops = create_token(settings, "ops", Scope.ADMIN)
    system = {**KPI, "id": "system:disk:plant/a1/line1:1", "source": "system", "rule": "disk"}
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        # kpi has no producer here: only a forwarder posts kpi events
        _refused(c.post("/api/v1/events", json=KPI, headers=_bearer(kpi)), "body.event.source",
                 "auth.event_producers.kpi is empty", "only a forwarder")
        _refused(c.post("/api/v1/events", json=[ANOMALY, KPI], headers=_bearer(scoring)),
                 "body.list.1.source", "'kpi'", "producers zhizao-scoring")
        assert _events(c, ops) == {}  # the whole list was refused, its anomaly event too
        # an anomaly event under a kpi id would overwrite the KPI alerter's episode
        hijack = {**ANOMALY, "id": KPI["id"], "asset": KPI["asset"]}
        _refused(c.post("/api/v1/events", json=[ANOMALY, hijack], headers=_bearer(scoring)), "body.list.1.id",
                 repr(KPI["id"]), "must begin with 'anomaly:'")
        assert _events(c, ops) == {}
        r = c.post("/api/v1/events", json=[ANOMALY, KPI, system], headers=_bearer(gateway))
        assert r.json() == {"upserted": 3}, r.text
        # admin implies write with the same binding: system events (ops is their producer here) only
        _refused(c.post("/api/v1/events", json=ANOMALY, headers=_bearer(ops)), "body.event.source",
                 "producers ops")
        r = c.post("/api/v1/events", json={**system, "state": "resolved", "end": "2026-11-23T09:00:00Z"},
                   headers=_bearer(ops))
        assert r.json() == {"upserted": 1}, r.text
        stored = _events(c, ops)
        assert stored[system["id"]]["state"] == "resolved" and stored[KPI["id"]]["source"] == "kpi"
        assert stored[ANOMALY["id"]]["source"] == "anomaly"
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_requests_rejected_total{reason="event_id_not_allowed",status="403"} 1.0' \
            in metrics
    # with the defaults, the KPI alerter's token posts kpi events
    settings.auth.event_producers = Settings().auth.event_producers
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/events", json={**KPI, "value": 0.4}, headers=_bearer(kpi))
        assert r.json() == {"upserted": 1}, r.text
        _refused(c.post("/api/v1/events", json={**KPI, "id": "oee-1"}, headers=_bearer(kpi)), "body.event.id",
                 "must begin with 'kpi:'")


def test_tokens_from_before_bindings_post_any_event_with_the_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """A write token from before bindings (no ``producers`` in the tokens file) keeps posting any
    event — as it keeps writing any producer's batches — and the start-up WARNING says so."""
    config = tmp_path / "ingest.toml"
    config.write_text(f'[auth]\ntokens_file = "{tmp_path / "tokens.json"}"\n')
    assert main(["token", "create", "--name", "scoring", "--scope", "read", "--scope", "write",
                 "--config", str(config)]) == 0
    legacy = capsys.readouterr().out.strip()
    doc = json.loads((tmp_path / "tokens.json").read_text())
    for r in doc["tokens"]:  # as the previous version wrote them
        r.pop("producers", None)
        r.pop("forwarder", None)
    (tmp_path / "tokens.json").write_text(json.dumps(doc))
    caplog.set_level(logging.WARNING, logger="ingest")
    with run_server(server_settings(tmp_path, auth=True)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/events", json=[ANOMALY, KPI, {**KPI, "id": "custom-1"}], headers=_bearer(legacy))
        assert r.json() == {"upserted": 3}, r.text
        assert len(_events(c, legacy)) == 3
    warnings = [rec.getMessage() for rec in caplog.records if "not bound to producers" in rec.getMessage()]
    assert len(warnings) == 1 and "(scoring)" in warnings[0], warnings
    assert "post events of any source" in warnings[0] and "auth.event_producers" in warnings[0]


def test_event_producers_setting_is_checked() -> None:
    """``auth.event_producers`` has one key per event source, each a list of producer ids; a bad id
    is a configuration error naming the key."""
    defaults = Settings().auth.event_producers
    assert set(type(defaults).model_fields) == {s.value for s in EventSource}
    assert defaults.of(EventSource.ANOMALY) == ["zhizao-scoring"]
    assert defaults.of(EventSource.KPI) == ["zhizao-kpi"]
    merged = validate(Settings, {"auth": {"event_producers": {"anomaly": ["scoring-2"]}}}, "test")
    assert merged.auth.event_producers.anomaly == ["scoring-2"]
    assert merged.auth.event_producers.kpi == ["zhizao-kpi"]  # the other sources keep their default
    with pytest.raises(ConfigError, match=r"event_producers\.kpi"):
        validate(Settings, {"auth": {"event_producers": {"kpi": ["bad producer"]}}}, "test")
    with pytest.raises(ConfigError, match="gossip"):
        validate(Settings, {"auth": {"event_producers": {"gossip": ["x"]}}}, "test")
