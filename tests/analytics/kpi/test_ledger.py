"""KPIs from a real store (DuckDB; InfluxDB via a real influxd) match the simulator's ledger.

The example scenario has every fault kind: a sensor dropout, a counter reset and a skewed clock
among them; their data-quality flags must appear on the machines they hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import improvement_report, kpi_report
from analytics.kpi.windows import GroupBy
from ingest.settings import InfluxSettings
from ingest.storage.base import SampleFrame, Store
from ingest.storage.duckdb.store import DuckDBStore
from ingest.storage.influxdb.store import InfluxStore
from tests.analytics.kpi.conftest import SHIFT_S, Shift
from tests.support.servers import InfluxDB
from zhizao.model import Sample

SKEWED = "plant1/a1/line2/pack-1"
RESET = "plant1/a1/line2/asm-1"
DROPOUT = "plant1/a1/line1/imm-2"


async def _load(store: Store, samples: Sequence[Sample]) -> None:
    for i in range(0, len(samples), 100_000):
        await store.write(SampleFrame.from_samples(samples[i:i + 100_000]))


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= rel * max(abs(b), 1e-9)


def _check(rec: dict[str, Any], led: dict[str, Any], *, skewed: bool) -> list[str]:
    bad: list[str] = []
    for k in ("availability", "performance", "quality", "oee"):
        if abs(rec[k] - led[k]) > 0.01:
            bad.append(f"{k} {rec[k]} vs {led[k]}")
    if not _close(rec["kwh_per_good_part"], led["kwh_per_good_part"], 0.01):
        bad.append(f"kwh_per_good_part {rec['kwh_per_good_part']} vs {led['kwh_per_good_part']}")
    if not _close(rec["energy_kwh"], led["energy_kwh"], 0.01):
        bad.append(f"energy_kwh {rec['energy_kwh']} vs {led['energy_kwh']}")
    for k in ("mtbf_s", "mttr_s"):
        if not _close(rec[k], led[k], 0.02):
            bad.append(f"{k} {rec[k]} vs {led[k]}")
    for k in ("total_count", "good_count", "scrap_count", "failures", "count_by_product"):
        if rec[k] != led[k]:
            bad.append(f"{k} {rec[k]} vs {led[k]}")
    # Times to the tick; a skewed clock moves up to its offset (90 s) between states.
    tol = 90.0 if skewed else 1e-6
    for k in ("planned_time_s", "run_time_s", "idle_time_s", "setup_time_s", "down_time_s"):
        if abs(rec[k] - led[k]) > tol:
            bad.append(f"{k} {rec[k]} vs {led[k]}")
    if not skewed and rec["down_time_s_by_reason"] != led["down_time_s_by_reason"]:
        bad.append(f"by reason {rec['down_time_s_by_reason']} vs {led['down_time_s_by_reason']}")
    for state, kwh in led["energy_by_state_kwh"].items():
        if abs(rec["energy_by_state_kwh"].get(state, 0.0) - kwh) > 0.01 * led["energy_kwh"]:
            bad.append(f"energy {state} {rec['energy_by_state_kwh'].get(state)} vs {kwh}")
    if not _close(rec["peak_kw"], led["peak_kw"], 0.01):
        bad.append(f"peak_kw {rec['peak_kw']} vs {led['peak_kw']}")
    return bad


async def _report(store: Store, shift: Shift) -> dict[str, Any]:
    start = shift.scenario.start
    return await kpi_report(store, shift.plant, KpiConfig(), "plant1", start=start,
                            end=start + timedelta(seconds=SHIFT_S), group_by=GroupBy.SHIFT)


def _assert_matches_ledger(report: dict[str, Any], shift: Shift) -> None:
    machines = {(r["machine"], r["shift"]): r for r in shift.ledger if r["type"] == "shift"}
    lines = {(r["line"], r["shift"]): r for r in shift.ledger if r["type"] == "line_shift"}
    assert [w["window"] for w in report["windows"]] == ["2026-11-23/early"]
    problems: dict[str, list[str]] = {}
    n = 0
    for w in report["windows"]:
        for m in w["machines"]:
            led = machines[(m["machine"], w["window"])]
            problems[m["machine"]] = _check(m, led, skewed=m["machine"] == SKEWED)
            n += 1
        for ln in w["lines"]:
            name = ln["line"]
            problems[name] = _check(ln, lines[(name, w["window"])], skewed=name.endswith("/line2"))
            n += 1
    assert n == 9 + 2
    assert {k: v for k, v in problems.items() if v} == {}


def _flags(report: dict[str, Any], machine: str) -> dict[str, dict[str, Any]]:
    rec = next(m for m in report["windows"][0]["machines"] if m["machine"] == machine)
    return {f["kind"] + ":" + str(f.get("signal", "")): f for f in rec["data_quality"]["flags"]}


def _assert_flags(report: dict[str, Any]) -> None:
    reset = _flags(report, RESET)
    assert reset["counter_reset:parts_total"]["count"] == 1
    assert reset["counter_reset:energy_kwh"]["count"] == 1
    skew = _flags(report, SKEWED)
    jumps = skew["clock_skew:"]["jumps"]
    assert len(jumps) == 2
    assert abs(jumps[0]["offset_s"] - 90) <= 2 and abs(jumps[1]["offset_s"] + 90) <= 2
    drop = _flags(report, DROPOUT)
    assert drop["telemetry_gap:mould_temp"]["gap_s"] >= 900 - 60
    clean = next(m for m in report["windows"][0]["machines"] if m["machine"].endswith("cnc-1"))
    assert clean["data_quality"] == {"ok": True, "flags": []}


async def test_duckdb_kpis_match_the_ledger(tmp_path: Path, workshop: Shift) -> None:
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await _load(store, workshop.samples)
        report = await _report(store, workshop)
    _assert_matches_ledger(report, workshop)
    _assert_flags(report)


async def test_influxdb_gives_the_same_kpis_as_duckdb(
        tmp_path: Path, influxdb: InfluxDB, workshop: Shift) -> None:
    settings = InfluxSettings(url=influxdb.url, database=influxdb.database, timeout_s=120)
    async with InfluxStore(settings) as influx, DuckDBStore(str(tmp_path / "kpi.duckdb")) as duck:
        await _load(influx, workshop.samples)
        await _load(duck, workshop.samples)
        from_influx = await _report(influx, workshop)
        from_duck = await _report(duck, workshop)
    _assert_matches_ledger(from_influx, workshop)
    _assert_flags(from_influx)
    assert from_influx == from_duck


async def test_improved_shift_shows_improvement_against_baseline(
        tmp_path: Path, workshop: Shift, improved: Shift) -> None:
    start = workshop.scenario.start
    base = (start, start + timedelta(seconds=SHIFT_S))
    cur = (start + timedelta(days=1), start + timedelta(days=1, seconds=SHIFT_S))
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await _load(store, workshop.samples)
        await _load(store, improved.samples)
        rep = await improvement_report(store, workshop.plant, KpiConfig(), "plant1", baseline=base,
                                       current=cur)
    metrics = {m["metric"]: m for m in rep["metrics"]}
    eff = metrics["energy_efficiency"]
    assert eff["current"] < eff["baseline"]
    assert eff["met"] == (eff["current"] <= eff["baseline"] / 1.15)
    prod = metrics["productivity"]
    assert prod["current"] > prod["baseline"]
    assert prod["met"] == (prod["current"] >= prod["baseline"] * 1.2)
    cost = metrics["operating_cost"]
    assert cost["met"] == (cost["current"] <= cost["baseline"] * 0.9)
    assert rep["all_met"] == all(m["met"] for m in rep["metrics"])
    print({k: (round(v["baseline"], 4), round(v["current"], 4), round(v["change_pct"], 1), v["met"])
           for k, v in metrics.items()})
