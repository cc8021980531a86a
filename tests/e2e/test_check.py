"""``zhizao check`` through the whole real stack (simulator, embedded broker, edge agent, ingest on
DuckDB, analytics): passes on the CI scenario, fails with a clear report on a wrong expectation and
when the agent is stopped mid-run, refuses a bad expectations section naming the key."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import CI_SCENARIO, zhizao


def variant(tmp_path: Path, name: str, **expectations: Any) -> Path:
    doc = yaml.safe_load(CI_SCENARIO.read_text(encoding="utf-8"))
    doc["expectations"] = expectations
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_ci_scenario_passes_with_reports(tmp_path: Path) -> None:
    junit, report = tmp_path / "check.xml", tmp_path / "check.json"
    run = zhizao("check", "--scenario", str(CI_SCENARIO), "--seed", "7", "--junit", str(junit),
                 "--json", str(report), cwd=tmp_path)
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "expectations met" in run.stdout
    doc = json.loads(report.read_text())
    assert doc["passed"] is True and doc["failures"] == 0 and doc["undelivered"] == 0
    results = {r["name"]: r for r in doc["results"]}
    kpis = [r for r in doc["results"] if r["group"] == "kpi"]
    assert len(kpis) == 10 and all(r["ok"] for r in kpis), kpis  # OEE/A/P/Q, kWh/part, MTBF/MTTR, counts
    assert results["samples lost"]["actual"] == "0" and results["samples lost"]["ok"] is True
    flow = results["samples served → stored"]
    served, stored = flow["expected"], flow["actual"]
    assert int(served) == int(stored) > 20_000
    faults = {r["name"]: r for r in doc["results"] if r["group"] == "fault"}
    assert faults["bearing_wear on line1/cnc-1"]["ok"] is True
    assert "anomaly event" in faults["bearing_wear on line1/cnc-1"]["detail"]
    assert faults["sensor_dropout on line1/pack-1"]["ok"] is True
    assert "telemetry_gap:screw_torque" in faults["sensor_dropout on line1/pack-1"]["detail"]
    leak = faults["air_leak on line1/comp-1"]  # only the energy model can see it (rule "energy")
    assert leak["ok"] is True and ":energy:plant1/a1/line1/comp-1:" in leak["detail"], leak
    assert set(faults) == {"bearing_wear on line1/cnc-1", "sensor_dropout on line1/pack-1",
                           "overheating on line1/imm-1", "air_leak on line1/comp-1"}  # every injected fault
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert int(suite.get("tests") or 0) == len(doc["results"])


def test_wrong_expectation_fails_clearly(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "wrong", run={"duration_s": 300},
                       kpis=[{"scope": "line1", "kpi": "oee", "equals": 0.99, "tolerance": 0.01},
                             {"scope": "line1", "kpi": "good_count"}])
    junit = tmp_path / "wrong.xml"
    run = zhizao("check", "--scenario", str(scenario), "--junit", str(junit), cwd=tmp_path)
    print(run.stdout[-4000:])
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-4000:]
    assert "1 expectation(s) failed" in run.stdout
    assert "oee of line1" in run.stdout and "0.99" in run.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failed = [tc.get("name") for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert len(failed) == 1 and str(failed[0]).startswith("oee of line1")


def test_agent_stopped_mid_run_fails(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "agent-stop", run={"duration_s": 420, "stop_agent_at_s": 200})
    report = tmp_path / "stop.json"
    run = zhizao("check", "--scenario", str(scenario), "--json", str(report), cwd=tmp_path)
    print(run.stdout[-4000:])
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-4000:]
    assert "stopping the edge agent" in run.stdout
    doc = json.loads(report.read_text())
    assert doc["agent_stopped"] is True and doc["passed"] is False
    lost = next(r for r in doc["results"] if r["name"] == "samples lost")
    assert lost["ok"] is False and int(lost["actual"]) > 5000  # more than half of the run never arrived
    assert any(r["group"] == "kpi" and r["ok"] is False for r in doc["results"])


def test_bad_expectations_are_refused_naming_the_key(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "bad", kpis=[{"scope": "line1", "kpi": "oee", "tolerence": 0.01}],
                       faults=[{"machine": "line1/cnc-1", "kind": "overheating", "detect_within_s": 60}])
    run = zhizao("check", "--scenario", str(scenario), cwd=tmp_path, timeout=60)
    assert run.returncode == 2
    assert "expectations.kpis[0].tolerence" in run.stdout


def test_through_the_site_gateway(tmp_path: Path) -> None:
    scenario = variant(tmp_path, "gateway", run={"duration_s": 600},
                       faults=[{"machine": "line1/pack-1", "kind": "sensor_dropout", "detect_within_s": 360}])
    report = tmp_path / "gateway.json"
    run = zhizao("check", "--scenario", str(scenario), "--gateway", "--json", str(report), cwd=tmp_path)
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "gateway" in run.stdout
    doc = json.loads(report.read_text())
    assert doc["gateway"] is True and doc["passed"] is True
    results = {r["name"]: r for r in doc["results"]}
    assert results["samples lost"]["actual"] == "0"
    assert results["samples stored twice or unexpected"]["actual"] == "0"
