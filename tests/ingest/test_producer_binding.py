"""Write tokens are bound to the producers they may write batches as (security review H2), and a
token is read from the query string only on the InfluxDB-compatible routes (security review L4).

Every test runs a real ingest (uvicorn) on a real store: DuckDB, and InfluxDB (``influxd``) for the
deduplication attack itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from ingest.auth import Scope
from ingest.cli import main
from ingest.testing import create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, auth_settings, batch, post, stored_count
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch

NDJSON = {"content-type": "application/x-ndjson"}


def _as(token: str) -> str:
    return f"Bearer {token}"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": _as(token)}


def _ndjson(*batches: Batch) -> bytes:
    return b"\n".join(encode_batch(b) for b in batches)


def _forged(victim: str, batch_id: str) -> Batch:
    """A batch claiming to be ``victim``'s, with false values (the real one is 0..9)."""
    real = batch(batch_id, producer=victim)
    return Batch(victim, batch_id, real.seq,
                 tuple(Sample(s.asset, s.signal, s.ts, -999.0, s.unit) for s in real.samples))


def _values(c: httpx.Client, reader: str) -> list[float]:
    r = c.get("/api/v1/series", headers=_bearer(reader), params={
        "asset": "plant/a1/line1/cnc-1", "signal": "power_kw", "start": "2000-01-01T00:00:00Z",
        "end": "2100-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    return [v for s in r.json()["series"] for v in s["values"]]


_settings = auth_settings


@pytest.mark.parametrize("backend", ["duckdb", "influxdb"])
def test_another_write_token_cannot_pre_empt_an_agents_batch_id(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """The H2 reproduction: a holder of any write token sends ``producer: agent-7`` with agent-7's
    next batch id and false values. Refused 403 naming the producer and the token, nothing stored
    and nothing marked as seen: agent-7's real batch with that id is then stored, not answered
    ``duplicate``."""
    settings = _settings(tmp_path, backend, request)
    settings.limits.rate_samples_per_s = 1
    settings.limits.rate_burst_samples = 10
    agent = create_token(settings, "agent-7", Scope.WRITE)
    intruder = create_token(settings, "intruder", Scope.WRITE)
    reader = create_token(settings, "grafana", Scope.READ)
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        forged = _forged("agent-7", "a1b2c3d4-0000000042")
        r = post(c, forged, authorization=_as(intruder))
        assert_problem(r, 403, "intruder", "'agent-7'", "Nothing was stored")
        # the same through the bulk endpoint, hidden among the intruder's own lines: the whole
        # request is refused, nothing of it stored (not even the intruder's own line)
        r = c.post("/api/v1/batches/bulk", content=_ndjson(batch("own-1", producer="intruder"), forged),
                   headers={**NDJSON, **_bearer(intruder)})
        assert_problem(r, 403, "intruder", "'agent-7'")
        assert stored_count(c, authorization=_as(reader)) == 0
        # nothing was marked as seen, nor taken from agent-7's rate (burst 10 = one batch): the
        # agent's real batch with that id is stored, with its values
        real = batch("a1b2c3d4-0000000042", producer="agent-7")
        r = post(c, real, authorization=_as(agent))
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False and r.json()["accepted"] == 10
        assert sorted(_values(c, reader)) == [float(i) for i in range(10)]
        # the intruder writes as itself
        r = post(c, batch("own-1", producer="intruder", signal="power_kw_2"), authorization=_as(intruder))
        assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_requests_rejected_total{reason="producer_not_allowed",status="403"} 2.0' \
            in metrics


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(f'[auth]\ntokens_file = "{tmp_path / "tokens.json"}"\n'
                    f'[storage.duckdb]\npath = "{tmp_path / "ingest.duckdb"}"\n')
    return path


def _cli_token(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> str:
    assert main(["token", "create", *argv, "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("zz_")
    return token


def test_token_create_binds_producers_and_forwarders(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--producer P`` (repeatable) binds a write token to P instead of its name; ``--forwarder``
    (a site gateway's token) writes as any producer; ``token list`` and the admin API show it."""
    config = _config(tmp_path)
    scoring = _cli_token(capsys, config, "--name", "scoring", "--scope", "read", "--scope", "write",
                         "--producer", "zhizao-scoring")
    cell = _cli_token(capsys, config, "--name", "cell-1", "--producer", "cell-1", "--producer", "cell-1b")
    gateway = _cli_token(capsys, config, "--name", "gateway", "--forwarder")
    admin = _cli_token(capsys, config, "--name", "ops", "--scope", "admin")
    # refusals: exit 2, nothing written
    before = (tmp_path / "tokens.json").read_text()
    for argv in (["--name", "r", "--scope", "read", "--producer", "x"],   # binding without write
                 ["--name", "r", "--scope", "read", "--forwarder"],
                 ["--name", "g2", "--forwarder", "--producer", "x"],       # both
                 ["--name", "g3", "--producer", "bad producer"]):          # not a producer id
        assert main(["token", "create", *argv, "--config", str(config)]) == 2, argv
        assert capsys.readouterr().out == ""
    assert (tmp_path / "tokens.json").read_text() == before
    assert main(["token", "list", "--config", str(config)]) == 0
    rows = {line.split("\t")[1]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    assert rows["scoring"][-1] == "producers zhizao-scoring"
    assert rows["cell-1"][-1] == "producers cell-1,cell-1b"
    assert rows["gateway"][-1] == "forwarder (any producer)"
    assert rows["ops"][-1] == "producers ops"
    with run_server(server_settings(tmp_path, auth=True)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert post(c, batch("s-1", producer="zhizao-scoring"), authorization=_as(scoring)).status_code == 200
        assert_problem(post(c, batch("s-2", producer="scoring"), authorization=_as(scoring)), 403,
                       "scoring", "'scoring'", "producers zhizao-scoring")
        assert post(c, batch("c-1", producer="cell-1b"), authorization=_as(cell)).status_code == 200
        assert_problem(post(c, batch("c-2", producer="cell-2"), authorization=_as(cell)), 403, "'cell-2'")
        # an admin token writes (admin implies write) only as itself too
        assert_problem(post(c, batch("o-1", producer="agent-1"), authorization=_as(admin)), 403, "'agent-1'")
        # the gateway forwards other agents' batches under their own identity
        r = c.post("/api/v1/batches/bulk", headers={**NDJSON, **_bearer(gateway)},
                   content=_ndjson(batch("g-1", producer="agent-1"), batch("g-1", producer="agent-2"),
                                   batch("g-1", producer="fleet.agent-1")))
        assert r.status_code == 200 and r.json()["accepted"] == 30 and r.json()["errors"] == 0, r.text
        listed = {t["name"]: t for t in c.get("/api/v1/admin/tokens", headers=_bearer(admin)).json()}
        assert listed["gateway"]["forwarder"] is True and listed["gateway"]["producers"] == []
        assert listed["scoring"]["producers"] == ["zhizao-scoring"]
        assert stored_count(c, authorization=_as(admin)) == 50


def test_tokens_from_before_bindings_keep_working_as_forwarders_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """A tokens file written before bindings (records without ``producers``): its write tokens still
    write as any producer (a gateway's must keep forwarding), and ingest logs one WARNING per such
    active write token at start, saying to re-create it bound; ``token list`` shows them unbound."""
    config = _config(tmp_path)
    issued: list[tuple[str, tuple[str, ...]]] = [
        ("gateway", ()), ("agent-3", ()), ("old", ()), ("grafana", ("--scope", "read"))]
    legacy = {name: _cli_token(capsys, config, "--name", name, *scopes) for name, scopes in issued}
    doc = json.loads((tmp_path / "tokens.json").read_text())
    for r in doc["tokens"]:  # as the previous version wrote them
        r.pop("producers", None)
        r.pop("forwarder", None)
    (tmp_path / "tokens.json").write_text(json.dumps(doc))
    assert main(["token", "revoke", legacy["old"].split("_")[1], "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["token", "list", "--config", str(config)]) == 0
    rows = {line.split("\t")[1]: line.split("\t")[-1] for line in capsys.readouterr().out.splitlines()}
    assert rows["gateway"].startswith("unbound") and rows["agent-3"].startswith("unbound")
    assert rows["grafana"] == "-"
    caplog.set_level(logging.WARNING, logger="ingest")
    with run_server(server_settings(tmp_path, auth=True)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v1/batches/bulk", headers={**NDJSON, **_bearer(legacy["gateway"])},
                   content=_ndjson(batch("g-1", producer="agent-1"), batch("g-1", producer="agent-2")))
        assert r.status_code == 200 and r.json()["accepted"] == 20, r.text
        r = post(c, batch("x-1", producer="agent-9"), authorization=_as(legacy["agent-3"]))
        assert r.status_code == 200, r.text
    warnings = [rec.getMessage() for rec in caplog.records
                if rec.levelno == logging.WARNING and "not bound to producers" in rec.getMessage()]
    assert len(warnings) == 2, warnings  # gateway and agent-3: not the revoked one, not the reader
    assert any("(gateway)" in w for w in warnings) and any("(agent-3)" in w for w in warnings)
    assert all("Re-create it bound" in w and "--producer" in w and "--forwarder" in w for w in warnings)


def test_line_protocol_writes_count_as_the_tokens_producer(tmp_path: Path) -> None:
    """Line protocol carries no producer: a write counts as the token's name, against that
    producer's rate limit — ``/write`` is no way around the per-producer limit. Any write token
    may write line protocol, whatever producers it is bound to."""
    settings = server_settings(tmp_path, auth=True)
    settings.limits.rate_samples_per_s = 1
    settings.limits.rate_burst_samples = 15
    agent = create_token(settings, "agent-1", Scope.WRITE)
    lines = "\n".join(f"telemetry,site=plant,area=a1,line=line1,machine=cnc-9 x={i} {1795420800 + i}"
                      for i in range(10)).encode()
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert post(c, batch("b-1"), authorization=_as(agent)).status_code == 200  # 10 of agent-1's 15
        r = c.post("/write", params={"precision": "s"}, content=lines, headers=_bearer(agent))
        assert_problem(r, 429, "'agent-1'")
        assert int(r.headers["retry-after"]) >= 1
        # (issued on the running server: it reads the tokens file again when it changes)
        telegraf = create_token(settings, "telegraf", Scope.WRITE, producers=["something-else"])
        r = c.post("/api/v2/write", params={"precision": "s"}, content=lines,
                   headers={"authorization": f"Token {telegraf}"})
        assert r.status_code == 204, r.text
        r = c.post("/api/v2/write", params={"precision": "s"}, content=lines,
                   headers={"authorization": f"Token {telegraf}"})
        assert_problem(r, 429, "'telegraf'")


def test_a_token_in_the_query_string_is_read_only_on_influxdb_compatible_routes(tmp_path: Path) -> None:
    """``?p=<token>`` (InfluxDB 1.x clients) works on ``/write``, ``/api/v2/write`` — nowhere else:
    a token in a URL ends up in logs and browser history, and the admin API is no place for it."""
    settings = server_settings(tmp_path, auth=True)
    admin = create_token(settings, "ops", Scope.ADMIN)
    line = "telemetry,site=plant,area=a1,line=line1,machine=cnc-3 temp=20.5 {}"
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        p = {"u": "ops", "p": admin}
        assert_problem(c.get("/api/v1/admin/tokens", params=p), 401, "missing token")
        assert_problem(c.get("/api/v1/catalogue", params=p), 401, "missing token")
        assert_problem(c.get("/api/v1/series", params={**p, "asset": "plant", "start": "2026-01-01T00:00:00Z",
                                                        "end": "2027-01-01T00:00:00Z"}), 401)
        r = c.post("/api/v1/batches", params=p, content=encode_batch(batch("q-1", producer="ops")),
                   headers={"content-type": "application/json"})
        assert_problem(r, 401, "missing token")
        r = c.post("/api/v1/batches/bulk", params=p, content=encode_batch(batch("q-1", producer="ops")),
                   headers=NDJSON)
        assert_problem(r, 401, "missing token")
        r = c.post("/write", params={**p, "precision": "s"}, content=line.format(1795420800))
        assert r.status_code == 204, r.text
        r = c.post("/api/v2/write", params={**p, "precision": "s"}, content=line.format(1795420801))
        assert r.status_code == 204, r.text
        # the headers still work everywhere
        assert c.get("/api/v1/admin/tokens", headers=_bearer(admin)).status_code == 200
        assert stored_count(c, authorization=_as(admin)) == 2
