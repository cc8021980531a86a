"""Review 81/83: a machine's state is not held through a silence (the time beyond the gap
threshold after its last sample is unknown, and a window's figures do not depend on where the
query starts); an empty baseline sets no target; the improvement table warns about data quality
and shows every line; a compressor's production-only figures are not applicable. Over a real
DuckDB store, as the other KPI tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from analytics.kpi.config import KpiConfig, Targets
from analytics.kpi.improvement import compare
from analytics.kpi.render import render_improvement
from analytics.kpi.service import improvement_report, kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig

DAY = timedelta(days=1)
SILENT_AT = 1200.0
"""Seconds after the shift's start when the machine stops reporting (a running stretch)."""


def _silenced() -> list[Sample]:
    return [s for s in _shift() if s.ts <= T0 + timedelta(seconds=SILENT_AT)]


async def _report(tmp_path: Path, samples: list[Sample], start: datetime, end: datetime,
                  group_by: GroupBy = GroupBy.SHIFT, plant: PlantConfig = PLANT) -> dict[str, Any]:
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await store.write(SampleFrame.from_samples(samples))
        return await kpi_report(store, plant, KpiConfig(), "p", start=start, end=end, group_by=group_by)


async def test_state_is_not_held_through_a_silence(tmp_path: Path) -> None:
    """Silent from 1200 s (running): its last state holds for the gap threshold (90 s), then the
    planned time is unknown — not 'running' until the end of the shift."""
    rep = await _report(tmp_path, _silenced(), T0, T0 + timedelta(hours=1))
    (m,) = rep["windows"][0]["machines"]
    assert m["planned_time_s"] == 3000.0
    assert (m["run_time_s"], m["down_time_s"]) == (600.0 + 390.0, 300.0)
    assert m["unknown_time_s"] == 3000.0 - 990.0 - 300.0
    assert m["availability"] == 990.0 / 3000.0
    kinds = {f["kind"] for f in m["data_quality"]["flags"]}
    assert {"unknown_state", "telemetry_gap"} <= kinds and m["data_quality"]["ok"] is False


async def test_a_window_after_the_data_does_not_depend_on_the_query_start(tmp_path: Path) -> None:
    """The next day's shift, in which nothing was reported: the same record whether the query
    starts the day before (with the data) or at that shift — all of its planned time unknown."""
    samples = _silenced()
    early = await _report(tmp_path, samples, T0, T0 + DAY + timedelta(hours=1))
    late = await _report(tmp_path, samples, T0 + DAY, T0 + DAY + timedelta(hours=1))
    a, b = early["windows"][-1], late["windows"][-1]
    assert a["window"] == b["window"]
    (ma,), (mb,) = a["machines"], b["machines"]
    assert ma == mb
    assert (ma["run_time_s"], ma["unknown_time_s"], ma["availability"]) == (0.0, 3000.0, 0.0)
    assert {f["kind"] for f in ma["data_quality"]["flags"]} == {"no_data", "unknown_state"}


async def test_a_range_past_the_end_of_the_data_counts_the_rest_as_unknown(tmp_path: Path) -> None:
    """A day's range whose data end 1200 s into its shift (the live demo: a day range an hour into
    the run): the rest of the shift is unknown, so Performance is measured on the real run time."""
    rep = await _report(tmp_path, _silenced(), T0 - timedelta(hours=6), T0 + timedelta(hours=18),
                        group_by=GroupBy.DAY)
    (w,) = [w for w in rep["windows"] if w["planned_time_s"] > 0]
    (m,) = w["machines"]
    assert m["run_time_s"] == 990.0
    assert m["performance"] == m["ideal_time_s"] / 990.0


def test_an_empty_baseline_sets_no_target() -> None:
    """No good parts in the baseline (no data): productivity 0 gives no target and no verdict."""
    base = {"kwh_per_good_part": None, "energy_cost_per_good_part": None, "good_parts_per_planned_hour": 0.0,
            "cost_currency": "CNY", "data_quality": {"ok": False}}
    cur = {"kwh_per_good_part": 0.2, "energy_cost_per_good_part": 0.16, "good_parts_per_planned_hour": 0.0,
           "cost_currency": "CNY", "data_quality": {"ok": True}}
    rep = compare(base, cur, Targets())
    assert [(m["metric"], m["target"], m["change_pct"], m["met"]) for m in rep["metrics"]] == [
        ("energy_efficiency", None, None, None), ("operating_cost", None, None, None),
        ("productivity", None, None, None)]
    assert rep["all_met"] is False
    zero = compare({**base, "kwh_per_good_part": 0.0, "energy_cost_per_good_part": 0.0}, cur, Targets())
    assert [m["met"] for m in zero["metrics"]] == [None, None, None]
    real = compare({**base, "good_parts_per_planned_hour": 10.0}, {**cur, "good_parts_per_planned_hour": 0.0},
                   Targets())
    assert real["metrics"][2]["met"] is False  # a real baseline: nothing made now is a miss


async def test_improvement_with_an_empty_baseline_over_a_store(tmp_path: Path) -> None:
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await store.write(SampleFrame.from_samples([s for s in _shift()]))
        rep = await improvement_report(store, PLANT, KpiConfig(), "p",
                                       baseline=(T0 - DAY, T0 - DAY + timedelta(hours=1)),
                                       current=(T0, T0 + timedelta(hours=1)))
    assert rep["current_total"]["good_parts_per_planned_hour"] > 0
    assert [m["met"] for m in rep["metrics"]] == [None, None, None]


L2 = AssetPath.parse("p/a/l2/m2")
COMP = AssetPath.parse("p/a/l/comp-1")
PLANT2 = PlantConfig.model_validate({
    **PLANT.model_dump(mode="json"),
    "machines": [{"asset": "p/a/l/m1", "ideal_cycle_time_s": {"A": 10.0}},
                 {"asset": "p/a/l2/m2", "ideal_cycle_time_s": {"A": 10.0}},
                 {"asset": "p/a/l/comp-1"}],
})


def _as(asset: AssetPath, samples: list[Sample]) -> list[Sample]:
    return [replace(s, asset=asset) for s in samples]


def _next_day(samples: list[Sample]) -> list[Sample]:
    return [replace(s, ts=s.ts + DAY) for s in samples]


async def test_improvement_table_warns_about_data_quality_and_shows_each_line(tmp_path: Path) -> None:
    """Line l gets better (fewer kWh per part: its energy counter is reset, a data-quality flag),
    line l2 does not: the table has a row per line, the efficiency gain in the target's own terms,
    and a warning naming the flags."""
    base = _shift()
    samples = base + _next_day(_shift(energy_reset_at=1200)) + _as(L2, base) + _as(L2, _next_day(base))
    async with DuckDBStore(str(tmp_path / "kpi.duckdb")) as store:
        await store.write(SampleFrame.from_samples(samples))
        rep = await improvement_report(store, PLANT2, KpiConfig(), "p",
                                       baseline=(T0, T0 + timedelta(hours=1)),
                                       current=(T0 + DAY, T0 + DAY + timedelta(hours=1)))
    assert rep["data_quality_ok"] is False
    assert [ln["line"] for ln in rep["lines"]] == ["p/a/l", "p/a/l2"]
    assert {m["machine"] for m in rep["machines"]} >= {"p/a/l/m1", "p/a/l2/m2"}
    console = Console(width=220, record=True, color_system=None)
    render_improvement(rep, console)
    text = console.export_text()
    assert "p/a/l2" in text and "p/a/l " in text
    assert "data quality NOT ok" in text and "counter_reset (p/a/l/m1)" in text
    gain = rep["metrics"][0]["efficiency_gain_pct"]
    assert f"gain {gain:+.1f} % of +15 %" in text


async def test_a_compressor_has_no_production_only_figures(tmp_path: Path) -> None:
    comp = [s for s in _as(COMP, _shift()) if not s.signal.startswith("parts_")]
    rep = await _report(tmp_path, _shift() + comp, T0, T0 + timedelta(hours=1), plant=PLANT2)
    recs = {m["machine"]: m for m in rep["windows"][0]["machines"]}
    c, m1 = recs["p/a/l/comp-1"], recs["p/a/l/m1"]
    assert c["producing"] is False and c["run_time_s"] > 0
    assert c["good_parts_per_planned_hour"] is None
    losses = c["six_big_losses_s"]
    assert losses["reduced_speed_s"] is None and losses["process_defects_s"] is None
    assert c["six_big_losses_s"]["breakdowns_s"] == c["down_time_s"]
    assert m1["good_parts_per_planned_hour"] is not None
    assert m1["six_big_losses_s"]["reduced_speed_s"] is not None
