"""The KPI API mounted in a real ingest server (uvicorn) and the CLI, over a real DuckDB store."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from analytics.kpi.api import create_router
from analytics.kpi.cli import main
from analytics.kpi.config import KpiConfig
from ingest.api.deps import get_store, require
from ingest.app import create_app
from ingest.auth import Scope
from ingest.settings import Settings
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from tests.support.ports import free_port
from tests.support.webhook import WebhookReceiver
from zhizao.model import AssetPath, Sample
from zhizao.wire import format_ts

FROM, TO = format_ts(T0), format_ts(T0 + timedelta(hours=1))


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "kpi.duckdb"
    async with DuckDBStore(str(path)) as store:
        await store.write(SampleFrame.from_samples(_shift()))
    return path


@pytest.fixture
def server(db: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = Settings.model_validate({"storage": {"duckdb": {"path": str(db)}},
                                        "auth": {"tokens_file": str(tmp_path / "tokens.json")}})
    from ingest.testing import create_token

    token = create_token(settings, "kpi-reader", Scope.READ)
    app = create_app(settings)
    app.include_router(create_router(PLANT, KpiConfig(), store_dep=get_store, read_dep=require(Scope.READ)))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and t.is_alive(), "ingest did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        srv.should_exit = True
        t.join(10)


def test_kpis_over_http(server: tuple[str, str]) -> None:
    url, token = server
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p/a/l", "from": FROM, "to": TO}, headers=h)
    assert r.status_code == 200, r.text
    w = r.json()["windows"][0]
    assert w["window"] == "2026-11-23/early"
    m = w["machines"][0]
    assert (m["machine"], m["availability"], m["total_count"], m["failures"]) == ("p/a/l/m1", 0.8, 40, 1)
    assert w["lines"][0]["line"] == "p/a/l" and w["total"]["good_count"] == 35
    by_day = httpx.get(f"{url}/api/v1/kpis", headers=h,
                       params={"scope": "p", "from": FROM, "to": TO, "group_by": "day"}).json()
    assert by_day["windows"][0]["window"] == "2026-11-23"
    imp = httpx.get(f"{url}/api/v1/kpis/improvement", headers=h, params={
        "scope": "p", "baseline_from": FROM, "baseline_to": TO, "from": FROM, "to": TO}).json()
    assert {m["metric"]: m["change_pct"] for m in imp["metrics"]} == {
        "energy_efficiency": 0.0, "operating_cost": 0.0, "productivity": 0.0}


def test_bad_queries_are_4xx_naming_the_problem(server: tuple[str, str]) -> None:
    url, token = server
    h = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/api/v1/kpis", params={"scope": "p", "from": FROM, "to": TO}).status_code == 401
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p/../x", "from": FROM, "to": TO}, headers=h)
    assert r.status_code == 422 and "scope" in r.text
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p", "from": TO, "to": FROM}, headers=h)
    assert r.status_code == 422 and "after" in r.text
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p", "from": "2026-11-23T06:00:00", "to": TO},
                  headers=h)
    assert r.status_code == 422 and "offset" in r.text


def test_plain_dates_are_midnight_utc_as_on_the_command_line(server: tuple[str, str]) -> None:
    """``from=2026-11-23`` was refused with a hint ('append Z') that was refused too; a plain date is
    now the CLI's reading, midnight UTC, on both KPI routes; a date-time without offset stays 422."""
    url, token = server
    h = {"Authorization": f"Bearer {token}"}
    day, next_day = T0.date().isoformat(), (T0 + timedelta(days=1)).date().isoformat()
    plain = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p", "from": day, "to": next_day}, headers=h)
    stamped = httpx.get(f"{url}/api/v1/kpis", headers=h, params={
        "scope": "p", "from": f"{day}T00:00:00Z", "to": f"{next_day}T00:00:00Z"})
    assert plain.status_code == 200, plain.text
    assert plain.json() == stamped.json()
    imp = httpx.get(f"{url}/api/v1/kpis/improvement", headers=h, params={
        "scope": "p", "baseline_from": day, "baseline_to": next_day, "from": day, "to": next_day})
    assert imp.status_code == 200, imp.text
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p", "from": f"{day}T06:00", "to": TO}, headers=h)
    assert r.status_code == 422 and "plain date" in r.text


def _plant_file(tmp_path: Path) -> Path:
    p = tmp_path / "plant.yaml"
    p.write_text(yaml.safe_dump(PLANT.model_dump(mode="json")))
    return p


def test_cli_json_and_table(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # piped: every column (test_render.py: narrower)
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--scope", "p",
            "--from", FROM, "--to", TO]
    assert main([*args, "--json"]) == 0
    rep: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert rep["windows"][0]["machines"][0]["oee"] == pytest.approx(0.8 * (400 / 2400) * (35 / 40))
    assert main(args) == 0
    out = capsys.readouterr().out
    # one machine: its line and the scope total would repeat its figures, so only its row is shown
    assert "p/a/l/m1" in out and "0.800" in out and "TOTAL" not in out and "p/a/l " not in out
    assert main([*args, "--baseline-from", FROM, "--baseline-to", TO]) == 0
    assert "energy_efficiency" in capsys.readouterr().out


def test_cli_errors(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "plant.yaml"
    bad.write_text("calendar: {shifts: []}\n")
    assert main(["--duckdb", str(db), "--plant", str(bad), "--scope", "p", "--from", FROM, "--to", TO]) == 2
    assert "calendar.shifts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--duckdb", str(db), "--plant", str(bad), "--scope", "p", "--from", "yesterday", "--to", TO])
    assert exc.value.code == 2


async def test_kpi_alerter_over_a_store(db: Path) -> None:
    """OEE of the hand-made hour is 0.117: a rule 'oee < 0.6 over the last hour' opens an event
    (the window ends at 07:00); a rule on idle-energy share above 90 % stays quiet."""
    from analytics.events import ThresholdRule
    from analytics.kpi.alerts import KpiAlerter

    rules = [ThresholdRule(name="oee-low", kpi="oee", op="<", threshold=0.6, scope="p/a/l"),
             ThresholdRule(name="idle-high", kpi="idle_energy_share_ratio", op=">", threshold=0.9)]
    al = KpiAlerter(rules)
    async with DuckDBStore(str(db)) as store:
        events = await al.evaluate(store, PLANT, KpiConfig(), T0 + timedelta(hours=1))
    assert [(e.rule, e.asset, e.state.value) for e in events] == [("oee-low", "p/a/l/m1", "open")]
    assert events[0].value is not None and abs(events[0].value - 0.8 * (400 / 2400) * (35 / 40)) < 1e-9
    assert events[0].details["window_start"] == FROM


def test_cli_watch_once_emits_alerts_to_a_webhook(db: Path, tmp_path: Path, webhook: WebhookReceiver,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    events_cfg = tmp_path / "events.yaml"
    events_cfg.write_text(yaml.safe_dump({
        "sinks": {"webhooks": [{"url": webhook.url}]},
        "rules": [{"name": "oee-low", "kpi": "oee", "op": "<", "threshold": 0.6}]}))
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--watch", str(events_cfg),
            "--once", "--at", TO]
    assert main(args) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    event = json.loads(line)
    assert (event["rule"], event["asset"], event["state"]) == ("oee-low", "p/a/l/m1", "open")
    assert event["source"] == "kpi"
    assert [d.json()["events"][0]["id"] for d in webhook.received] == [event["id"]]
    assert not (tmp_path / "kpi-alerts.state").exists()   # --once: no state read or written


def test_cli_watch_refuses_a_state_file_in_a_folder_that_does_not_exist(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events_cfg = tmp_path / "events.yaml"
    rule = {"name": "oee-low", "kpi": "oee", "op": "<", "threshold": 0.6}
    events_cfg.write_text(yaml.safe_dump({"rules": [rule]}))
    state = tmp_path / "missing" / "kpi-alerts.state"
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--watch", str(events_cfg)]
    assert main([*args, "--state", str(state)]) == 2
    assert "folder" in capsys.readouterr().err and not state.parent.exists()
    with pytest.raises(SystemExit):
        main([*args, "--once", "--state", str(state)])


def test_a_scope_with_no_machine_is_refused_naming_the_known_ones(
        db: Path, tmp_path: Path, server: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """A scope under which neither the plant file nor the store has a machine used to give a TOTAL
    with Quality 1.0 and data quality ok (exit 0, HTTP 200): now exit 2 / 404, known ones listed."""
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--from", FROM, "--to", TO]
    for extra in ([], ["--baseline-from", FROM, "--baseline-to", TO]):
        assert main([*args, *extra, "--scope", "p/a/l7"]) == 2
        err = capsys.readouterr().err
        assert "--scope: no machine under 'p/a/l7'" in err
        assert "known lines: p/a/l;" in err and "machines: p/a/l/m1" in err
    url, token = server
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{url}/api/v1/kpis", params={"scope": "p/a/l7", "from": FROM, "to": TO}, headers=h)
    assert r.status_code == 404 and "no machine under 'p/a/l7'" in r.text and "p/a/l/m1" in r.text
    r = httpx.get(f"{url}/api/v1/kpis/improvement", headers=h, params={
        "scope": "p/a/l7", "baseline_from": FROM, "baseline_to": TO, "from": FROM, "to": TO})
    assert r.status_code == 404 and "p/a/l/m1" in r.text


async def test_a_machine_the_store_knows_but_silent_in_the_range_gets_a_no_data_record(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not in the plant file, no data in the range, but in the store's catalogue: a record flagged
    no_data (it exists, it said nothing), not "unknown scope"."""
    m9 = AssetPath.parse("q/a/l/m9")
    other = [Sample(m9, s.signal, s.ts - timedelta(days=2), s.value) for s in _shift()]
    async with DuckDBStore(str(db)) as store:
        await store.write(SampleFrame.from_samples(other))
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--scope", "q",
            "--from", FROM, "--to", TO, "--json"]
    assert await asyncio.to_thread(main, args) == 0
    (m,) = json.loads(capsys.readouterr().out)["windows"][0]["machines"]
    assert m["machine"] == "q/a/l/m9" and "no_data" in {f["kind"] for f in m["data_quality"]["flags"]}


def test_cli_times_without_offset_are_utc_like_train(db: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path)), "--scope", "p", "--json"]
    assert main([*base, "--from", FROM, "--to", TO]) == 0
    with_offset = json.loads(capsys.readouterr().out)
    assert main([*base, "--from", "2026-11-23T06:00", "--to", "2026-11-23 15:00+08:00"]) == 0
    assert json.loads(capsys.readouterr().out) == with_offset
    assert main([*base, "--from", "2026-11-23", "--to", "2026-11-24"]) == 0  # dates: midnight UTC
    assert json.loads(capsys.readouterr().out)["windows"][0]["machines"][0]["good_count"] == 35
    with pytest.raises(SystemExit) as exc:
        main([*base, "--from", "23.11.2026", "--to", TO])
    assert exc.value.code == 2 and "not an ISO-8601 date or date-time" in capsys.readouterr().err


def test_the_shared_time_parser() -> None:
    """One parser for ``train`` and ``kpi`` (zhizao/timeargs.py): dates, date-times, with or
    without offset (UTC), always returned in UTC."""
    from datetime import UTC, datetime

    from zhizao.timeargs import parse_time

    six = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    for text in ("2026-11-23T06:00", "2026-11-23 06:00:00", "2026-11-23T06:00:00Z", "2026-11-23T14:00+08:00"):
        got = parse_time(text)
        assert got == six and got.utcoffset() == timedelta(0), text
    assert parse_time("2026-11-23") == six - timedelta(hours=6)
    with pytest.raises(ValueError, match="not an ISO-8601"):
        parse_time("yesterday")
