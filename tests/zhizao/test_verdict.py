"""``zhizao check``'s comparison with the ground truth, on plain data (no servers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.events import EpisodeTracker
from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from simulator.engine import generate
from simulator.plant_export import plant_config
from zhizao.check import main as check_main
from zhizao.errors import ConfigError
from zhizao.events import EventSource
from zhizao.stack.expectations import Expectations, load_play
from zhizao.stack.report import passed, write_json
from zhizao.stack.verdict import GRACE, Detection, detections, fault_results, kpi_results
from zhizao.wire import format_ts, parse_ts

CI = Path(__file__).resolve().parents[1] / "e2e" / "scenarios" / "ci.yaml"
T0 = datetime(2026, 11, 23, 0, 4, tzinfo=UTC)
CNC = "plant1/a1/line1/cnc-1"


def test_detection_counts_until_the_alarm_went_out() -> None:
    """A fault is detected when its episode's alarm went out (``raised_at``: the tracker's on-delay
    after the episode's start), not when the condition first held."""
    scenario, _ = load_play(CI)
    tracker = EpisodeTracker(source=EventSource.ANOMALY, rule="anomaly", open_after_s=120.0)
    events = []
    for s in range(0, 400, 10):  # flagged from 60 s after the fault began
        events += tracker.observe(CNC, T0 + timedelta(seconds=s), s >= 60, 0.9)
    ledger = [{"type": "fault", "machine": "line1/cnc-1", "kind": "bearing_wear",
               "start": format_ts(T0), "end": format_ts(T0 + timedelta(seconds=900))}]
    (found,), false_alarms = detections(scenario, ledger, events, {})
    assert events[0].start == T0 + timedelta(seconds=60)
    assert found.ttd_s == 180.0 and found.by == f"anomaly event {events[0].id}"  # 60 s + the 120-s on-delay
    assert false_alarms == []
    older = events[0].model_copy(update={"details": {}})                # an event that does not say
    (found,), _ = detections(scenario, ledger, [older], {})
    assert found.ttd_s == 60.0


# --- QA review (helper-70): no expectation goes unjudged; repeated faults; readable reports ---

PACK = "plant1/a1/line1/pack-1"


def _ci_variant(tmp_path: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = yaml.safe_load(CI.read_text(encoding="utf-8"))
    edit(doc)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _fault(machine: str, kind: str, at_s: float, duration_s: float, **params: Any) -> dict[str, Any]:
    return {"type": "fault", "machine": machine, "kind": kind, "params": params,
            "start": format_ts(T0 + timedelta(seconds=at_s)),
            "end": format_ts(T0 + timedelta(seconds=at_s + duration_s))}


async def test_a_kpi_expectation_with_no_shift_window_in_the_run_fails_saying_why(tmp_path: Path) -> None:
    """The CI line played 07:00-07:15, before its 08:00 shift: the KPI report (real, on a DuckDB
    store) has no window, and the user's OEE expectation must fail rather than vanish."""
    def off_shift(doc: dict[str, Any]) -> None:
        doc["start"] = "2026-11-23T07:00:00+08:00"
        doc["expectations"] = {"run": {"duration_s": 900},
                               "kpis": [{"scope": "line1", "kpi": "oee", "equals": 0.99}]}

    scenario, exp = load_play(_ci_variant(tmp_path, "offshift", off_shift))
    generated = generate(scenario, 7, 900)
    async with DuckDBStore(tmp_path / "z.duckdb") as store:
        await store.write(SampleFrame.from_samples(list(generated)))
        report = await kpi_report(store, plant_config(scenario), KpiConfig(), scenario.site,
                                  start=scenario.start, end=scenario.start + timedelta(seconds=900),
                                  group_by=GroupBy.SHIFT)
    assert report["windows"] == []
    (result,) = kpi_results(scenario, exp, generated.ledger, report)
    assert result.ok is False and result.name == "oee of line1"
    assert result.expected == "0.99 ±0.01 (fixed)" and "no shift window in the run" in result.detail
    assert not passed([result])
    # the default set (the user wrote no kpis) is said, not failed
    (default,) = kpi_results(scenario, exp.model_copy(update={"kpis": None}), generated.ledger, report)
    assert default.ok is None and "no shift window in the run" in default.detail


def test_an_expected_fault_starting_at_or_after_the_run_end_is_refused(tmp_path: Path) -> None:
    """Known from the file alone: exit 2 naming the key, as for any malformed file; ``--duration``
    counts (``load_play(..., duration_s)``)."""
    def late(doc: dict[str, Any]) -> None:
        doc["faults"][0]["at"] = 1500  # bearing_wear on line1/cnc-1, after the 1200-s run

    path = _ci_variant(tmp_path, "latefault", late)
    with pytest.raises(ConfigError) as err:
        load_play(path)
    assert [k for k, _ in err.value.problems] == ["expectations.faults[0]"]
    assert "starts at 1500 s, at or after the run's end (1200 s)" in err.value.problems[0][1]
    assert check_main(["--scenario", str(path)]) == 2
    with pytest.raises(ConfigError) as err:  # the CI file played for 330 s: comp-1's leak starts at 360 s
        load_play(CI, duration_s=330)
    assert [k for k, _ in err.value.problems] == ["expectations.faults[2]"]
    load_play(CI, duration_s=400)  # every expected fault starts before 400 s


def test_the_same_fault_expected_twice_is_refused(tmp_path: Path) -> None:
    def twice(doc: dict[str, Any]) -> None:
        doc["expectations"]["faults"].append({"machine": "line1/cnc-1", "kind": "bearing_wear",
                                              "detect_within_s": 60})

    with pytest.raises(ConfigError) as err:
        load_play(_ci_variant(tmp_path, "twice", twice))
    assert [k for k, _ in err.value.problems] == ["expectations.faults[3]"]
    assert "already expected by expectations.faults[0]" in err.value.problems[0][1]


def test_an_expected_fault_missing_from_the_ledger_fails() -> None:
    """Every fault expectation yields a line, even when the ledger has no such fault."""
    scenario, exp = load_play(CI)
    results = fault_results(exp, [], [], scenario)
    faults = [r for r in results if r.group == "fault"]
    assert {r.name for r in faults} == {"bearing_wear on line1/cnc-1", "sensor_dropout on line1/pack-1",
                                        "air_leak on line1/comp-1"}
    assert all(r.ok is False and r.actual == "not in the run" for r in faults)


def test_scenario_and_expectation_errors_are_reported_together(tmp_path: Path) -> None:
    def both(doc: dict[str, Any]) -> None:
        doc["lines"][0]["machines"][2]["mttr_s"] = -45
        dropout = doc["expectations"]["faults"][1]
        dropout["detect_within"] = dropout.pop("detect_within_s")

    with pytest.raises(ConfigError) as err:
        load_play(_ci_variant(tmp_path, "malformed", both))
    keys = [k for k, _ in err.value.problems]
    assert "lines[0].machines[2].mttr_s" in keys and "expectations.faults[1].detect_within" in keys
    assert "expectations.faults[1].detect_within_s" in keys


def test_each_fault_of_a_kind_on_a_signal_is_matched_by_its_own_sighting() -> None:
    """Two screw_torque dropouts on pack-1 (300 s and 780 s): each detected by its own sighting of
    the gap flag; a sighting detects one fault at most (one sighting only: the second is missed)."""
    scenario, exp = load_play(CI)
    ledger = [_fault("line1/pack-1", "sensor_dropout", 300, 180, signal="screw_torque"),
              _fault("line1/pack-1", "sensor_dropout", 780, 180, signal="screw_torque"),
              _fault("line1/cnc-1", "counter_reset", 100, 60),
              _fault("line1/cnc-1", "counter_reset", 600, 60)]
    gap = (PACK, "telemetry_gap", "screw_torque")
    seen = {gap: [T0 + timedelta(seconds=391), T0 + timedelta(seconds=871)],
            (CNC, "counter_reset", "parts_total"): [T0 + timedelta(seconds=101)],
            (CNC, "counter_reset", "energy_kwh"): [T0 + timedelta(seconds=101), T0 + timedelta(seconds=641)]}
    found, _ = detections(scenario, ledger, [], seen)
    assert [(d.kind, d.ttd_s) for d in found] == [("sensor_dropout", 91.0), ("sensor_dropout", 91.0),
                                                 ("counter_reset", 1.0), ("counter_reset", 41.0)]
    results = [r for r in fault_results(exp, found, [], scenario)
               if r.name.startswith("sensor_dropout on line1/pack-1")]
    assert [(r.name, r.ok) for r in results] == [  # one line each, told apart by their start
        ("sensor_dropout on line1/pack-1 from 2026-11-23T00:09:00Z", True),
        ("sensor_dropout on line1/pack-1 from 2026-11-23T00:17:00Z", True)]
    (_, second, *_), _ = detections(scenario, ledger, [], {gap: [T0 + timedelta(seconds=391)]})
    assert second.detected_at is None
    # a sighting after the fault's window (its end + GRACE) is not its detection
    (first, *_), _ = detections(scenario, ledger[:1], [], {gap: [T0 + timedelta(seconds=480) + GRACE * 2]})
    assert first.detected_at is None


def test_fixed_expected_values_print_as_written() -> None:
    """``equals: 100000`` is shown as ``100000``, not ``1e+05``; measured values keep 4 digits."""
    scenario, _ = load_play(CI)
    exp = Expectations.model_validate({"kpis": [
        {"scope": "line1", "kpi": "energy_kwh", "equals": 100000.0},
        {"scope": "line1", "kpi": "oee", "equals": 0.62, "tolerance": 0.005},
        {"scope": "line1", "kpi": "mtbf_s", "equals": 1e-5, "tolerance": 0.025}]})
    report = {"windows": [{"window": "2026-11-23/ci", "machines": [],
                           "lines": [{"line": "plant1/a1/line1", "energy_kwh": 100400.25, "oee": 0.6213,
                                      "mtbf_s": 1.2e-5}]}]}
    energy, oee, mtbf = kpi_results(scenario, exp, [], report)
    assert energy.expected == "100000 ±1% (fixed)" and energy.actual == "100400" and energy.ok is True
    assert oee.expected == "0.62 ±0.005 (fixed)" and oee.ok is True
    assert mtbf.expected == "0.00001 ±2.5% (fixed)" and mtbf.ok is False


def test_detections_in_the_json_report_start_in_rfc3339(tmp_path: Path) -> None:
    """``detections[].start`` as the rest of zhizao writes instants, not ``str(datetime)``."""
    d = Detection(PACK, "sensor_dropout", T0 + timedelta(seconds=60), T0 + timedelta(seconds=240),
                  T0 + timedelta(seconds=151), "data-quality flag telemetry_gap:screw_torque")
    assert d.to_dict() == {"machine": PACK, "kind": "sensor_dropout", "start": "2026-11-23T00:05:00Z",
                           "ttd_s": 91.0, "by": "data-quality flag telemetry_gap:screw_torque"}
    write_json([], tmp_path / "r.json", {"detections": [d.to_dict()]})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["detections"][0]["start"] == "2026-11-23T00:05:00Z"
    assert parse_ts(doc["detections"][0]["start"]) == d.start
