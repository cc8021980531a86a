"""Every panel's query of every generated dashboard, variables resolved to real values, run against
the real influxd the simulated line filled through ingest: each must return rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dashboards.generate import GENERATED_DIR
from dashboards.verify import InfluxQL, run_board
from tests.dashboards.conftest import Stack
from tests.dashboards.fill import AGENT, FAULTY

BOARDS = sorted(p.stem for p in GENERATED_DIR.glob("*.json"))


@pytest.mark.parametrize("uid", BOARDS)
def test_every_query_of_the_board_returns_rows(stack: Stack, uid: str) -> None:
    doc = json.loads((GENERATED_DIR / f"{uid}.json").read_text())
    site, _, line, machine = FAULTY.split("/")
    overrides = {"site": site, "line": line, "machine": machine, "agent": "agent-2"}
    client = InfluxQL(stack.influx.url, "zhizao")
    try:
        runs = run_board(client, doc, stack.filled.start, stack.filled.end,
                         overrides={k: v for k, v in overrides.items() if k in _variables(doc)})
    finally:
        client.close()
    failed = [f"{r.where}: {r.error or 'no rows'}\n    {r.query}" for r in runs if not r.ok]
    assert not failed, "\n".join(failed)
    panels = [r for r in runs if r.where.startswith("panel")]
    assert len(panels) >= sum(len(p["targets"]) for p in doc["panels"])


def test_fleet_board_charts_the_real_edge_agent(stack: Stack) -> None:
    """The agent that forwarded line 2 through its durable buffer reported its own health: every
    fleet panel has rows for it too."""
    doc = json.loads((GENERATED_DIR / "zhizao-edge-fleet.json").read_text())
    client = InfluxQL(stack.influx.url, "zhizao")
    try:
        runs = run_board(client, doc, stack.filled.start, datetime.now(UTC),
                         overrides={"site": "plant1", "agent": AGENT})
    finally:
        client.close()
    failed = [f"{r.where}: {r.error or 'no rows'}\n    {r.query}" for r in runs if not r.ok]
    assert not failed, "\n".join(failed)


def test_anomaly_panel_draws_every_model_of_the_machine(stack: Stack) -> None:
    """Machine detail's anomaly panel: the health score and the energy model's score
    (``anomaly_score.energy``) of the selected machine, one series each."""
    doc = json.loads((GENERATED_DIR / "zhizao-machine-detail.json").read_text())
    panel = next(p for p in doc["panels"] if p["title"] == "Anomaly score")
    query = panel["targets"][0]["query"]
    site, _, line, machine = FAULTY.split("/")
    for name, value in (("site", site), ("line", line), ("machine", machine)):
        query = query.replace(f"${name}", value)
    start, end = (int(t.timestamp() * 1000) for t in (stack.filled.start, stack.filled.end))
    query = query.replace("$timeFilter", f"time >= {start}ms AND time <= {end}ms")
    query = query.replace("$__interval", "1m")
    client = InfluxQL(stack.influx.url, "zhizao")
    try:
        series, error = client.run(query)
    finally:
        client.close()
    assert error is None, error
    assert sorted(s["tags"]["signal"] for s in series) == ["anomaly_score", "anomaly_score.energy"]
    assert all(s["values"] for s in series)


def _variables(doc: dict[str, object]) -> set[str]:
    templating = doc.get("templating")
    assert isinstance(templating, dict)
    return {str(v["name"]) for v in templating["list"]}


def test_check_command_runs_every_query(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """``zhizao dashboards check --influx-url`` over the last hour: every query ok, exit 0."""
    from dashboards.cli import main

    argv = ["check", "--influx-url", stack.influx.url, "--hours", "1", "--var", "line=line1",
            "--var", "machine=imm-1", "--var", "agent=agent-2"]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count(" ok") >= 40
