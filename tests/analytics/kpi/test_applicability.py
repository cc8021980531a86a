"""What a KPI record says about itself: whether its data-quality flags concern the KPIs (a gap in a
series no KPI reads — a process signal, zhizao's own anomaly score — is listed but leaves ``ok``
true), and whether its machine makes parts at all (a compressor's OEE is not applicable, and no
OEE rule judges it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from analytics.events import ThresholdRule
from analytics.kpi.alerts import KpiAlerter
from analytics.kpi.config import DataQualityConfig
from analytics.kpi.report import build_report
from analytics.kpi.series import from_samples
from analytics.kpi.windows import GroupBy, make_windows
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig

COMP = "p/a/l/comp"


def _report(samples: list[Sample], plant: PlantConfig = PLANT,
            coverage: dict[str, list[float]] | None = None) -> dict[str, Any]:
    data = from_samples(samples)
    for signal, minutes in (coverage or {}).items():
        data["p/a/l/m1"].coverage[signal] = np.array([T0.timestamp() + 60 * m for m in minutes])
    w = make_windows(plant.calendar, T0, T0 + timedelta(hours=1), GroupBy.SHIFT)
    return build_report(data, w, plant, DataQualityConfig(), scope="p", group_by=GroupBy.SHIFT)


def _m1(rep: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in rep["windows"][0]["machines"] if m["machine"] == "p/a/l/m1")


def _every_minute_but(lo: int, hi: int) -> list[float]:
    return [m for m in range(-1, 61) if not lo <= m < hi]


def test_a_gap_in_a_series_no_kpi_reads_is_listed_but_data_quality_stays_ok() -> None:
    rep = _report(_shift(), coverage={"anomaly_score": _every_minute_but(10, 30),
                                      "mould_temp": list(range(-1, 61))})
    dq = _m1(rep)["data_quality"]
    (gap,) = dq["flags"]
    assert (gap["kind"], gap["signal"], gap["kpi_input"]) == ("telemetry_gap", "anomaly_score", False)
    assert gap["gap_s"] > 1000
    assert dq["ok"] is True
    assert rep["windows"][0]["total"]["data_quality"]["ok"] is True  # nor does it spoil the line's


def test_a_gap_in_a_kpi_input_still_makes_data_quality_not_ok() -> None:
    samples = [s for s in _shift()
               if not (s.signal == "energy_kwh" and 1000 <= (s.ts - T0).total_seconds() < 1300)]
    rep = _report(samples, coverage={"anomaly_score": _every_minute_but(10, 30)})
    dq = _m1(rep)["data_quality"]
    assert {(f["kind"], f["signal"], f.get("kpi_input", True)) for f in dq["flags"]} == {
        ("telemetry_gap", "energy_kwh", True), ("telemetry_gap", "anomaly_score", False)}
    assert dq["ok"] is False
    line = rep["windows"][0]["lines"][0]["data_quality"]
    assert line["ok"] is False and len(line["flags"]) == 2


def _with_compressor() -> tuple[list[Sample], PlantConfig]:
    doc = PLANT.model_dump(mode="json")
    plant = PlantConfig.model_validate({**doc, "machines": [*doc["machines"], {"asset": COMP}]})
    comp = AssetPath.parse(COMP)
    samples = _shift()
    samples += [Sample(comp, s.signal, s.ts, s.value) for s in samples
                if s.signal in ("state", "state_reason", "energy_kwh")]
    return samples, plant


def test_a_machine_that_makes_no_parts_is_marked_not_producing() -> None:
    samples, plant = _with_compressor()
    w = _report(samples, plant)["windows"][0]
    recs = {m["machine"]: m for m in w["machines"]}
    assert recs["p/a/l/m1"]["producing"] is True and recs[COMP]["producing"] is False
    # The figures still follow the definitions (P = 0 with no ideal time, Q = 1 with no parts) ...
    comp = recs[COMP]
    assert (comp["performance"], comp["quality"], comp["oee"], comp["good_count"]) == (0.0, 1.0, 0.0, 0)
    assert comp["availability"] == 0.8
    # ... and the line leaves the compressor out of OEE but not out of energy.
    (line,) = w["lines"]
    assert line["oee"] == recs["p/a/l/m1"]["oee"]
    assert abs(line["energy_kwh"] - 2 * recs["p/a/l/m1"]["energy_kwh"]) < 1e-9


def test_no_oee_alert_on_a_machine_that_makes_no_parts() -> None:
    samples, plant = _with_compressor()
    report = _report(samples, plant)
    rules = [ThresholdRule(name="oee-low", kpi="oee", op="<", threshold=0.9, for_s=0, min_planned_s=60),
             ThresholdRule(name="avail-low", kpi="availability", op="<", threshold=0.9, for_s=0,
                           min_planned_s=60)]
    al = KpiAlerter(rules)
    oee = al.observe_report(rules[0], report, T0 + timedelta(hours=1))
    assert [e.asset for e in oee] == ["p/a/l/m1"]   # OEE 0.117 < 0.9; the compressor's 0 is no verdict
    avail = al.observe_report(rules[1], report, T0 + timedelta(hours=1))
    assert sorted(e.asset for e in avail) == [COMP, "p/a/l/m1"]  # its availability is still judged
