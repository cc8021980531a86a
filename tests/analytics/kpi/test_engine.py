"""The KPI engine on small hand-made telemetry with values worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analytics.kpi.config import DataQualityConfig
from analytics.kpi.report import build_report
from analytics.kpi.series import from_samples
from analytics.kpi.windows import GroupBy, make_windows
from zhizao.model import AssetPath, Quality, Sample
from zhizao.plant import PlantConfig

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
M = AssetPath.parse("p/a/l/m1")
PLANT = PlantConfig.model_validate({
    "calendar": {"shifts": [{"name": "early", "start": "06:00", "end": "07:00",
                             "breaks": [{"start": "06:30", "end": "06:40"}]}]},
    "machines": [{"asset": "p/a/l/m1", "ideal_cycle_time_s": {"A": 10.0}}],
    "tariff": {"default_price_per_kwh": 1.0,
               "periods": [{"name": "peak", "start": "06:00", "end": "06:15", "price_per_kwh": 2.0}]},
})


def _s(signal: str, dt: float, value: Any, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(M, signal, T0 + timedelta(seconds=dt), value, quality=quality)


def _shift(parts: list[int] | None = None, energy_reset_at: int | None = None) -> list[Sample]:
    """running 0-600, down:jam 600-900, running 900-1800, off (break) 1800-2400, idle:starved
    2400-2700, running 2700-3600; state repeated every minute; 1 kWh per minute all the time;
    a part every 20 s from 20 s to 800 s (40 parts, the last 5 scrap)."""
    timeline = [(0, "running", ""), (600, "down", "jam"), (900, "running", ""), (1800, "off", "break"),
                (2400, "idle", "starved"), (2700, "running", ""), (3600, "off", "no_shift")]
    out = [_s("state", -60, "off"), _s("state_reason", -60, "no_shift"), _s("product", -60, "A")]
    for t in range(0, 3601, 60):
        cur = [x for x in timeline if x[0] <= t][-1]
        out += [_s("state", t, cur[1]), _s("state_reason", t, cur[2]), _s("product", t, "A")]
    for k in range(-60, 3601):
        e = (k + 60) / 60.0
        if energy_reset_at is not None and k >= energy_reset_at:
            e = (k - energy_reset_at) / 60.0
        out.append(_s("energy_kwh", k, e))
    counts = parts if parts is not None else list(range(41))
    times = [20 * i for i in range(len(counts))]
    times += list(range(times[-1] + 60, 3601, 60))  # repeated at least once a minute
    counts += [counts[-1]] * (len(times) - len(counts))
    for t, n in zip(times, counts, strict=True):
        scrap = max(0, n - 35)
        out += [_s("parts_total", t, n), _s("parts_good", t, n - scrap), _s("parts_scrap", t, scrap)]
    return out


def _report(samples: list[Sample], group_by: GroupBy = GroupBy.SHIFT) -> dict[str, Any]:
    w = make_windows(PLANT.calendar, T0, T0 + timedelta(hours=1), group_by)
    return build_report(from_samples(samples), w, PLANT, DataQualityConfig(), scope="p", group_by=group_by)


def _machine(rep: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = rep["windows"][0]["machines"][0]
    return m


def test_oee_energy_reliability_by_hand() -> None:
    m = _machine(_report(_shift()))
    assert m["planned_time_s"] == 3000.0
    assert (m["run_time_s"], m["down_time_s"], m["idle_time_s"], m["setup_time_s"]) == (2400, 300, 300, 0)
    assert m["down_time_s_by_reason"] == {"down:jam": 300.0, "idle:starved": 300.0}
    assert (m["total_count"], m["good_count"], m["scrap_count"]) == (40, 35, 5)
    assert m["count_by_product"] == {"A": {"total": 40, "good": 35, "scrap": 5}}
    assert m["availability"] == 0.8
    assert m["performance"] == 400 / 2400
    assert m["quality"] == 35 / 40
    assert abs(m["oee"] - 0.8 * (400 / 2400) * (35 / 40)) < 1e-12
    assert abs(m["energy_kwh"] - 60.0) < 1e-9
    by = m["energy_by_state_kwh"]
    assert abs(by["running"] - 40.0) < 1e-9 and abs(by["down"] - 5.0) < 1e-9
    assert abs(by["idle"] - 5.0) < 1e-9 and abs(by["off"] - 10.0) < 1e-9
    assert abs(m["idle_energy_share_ratio"] - 20 / 60) < 1e-9
    assert abs(m["kwh_per_good_part"] - 60 / 35) < 1e-9
    # 15 min at 2.0 + 45 min at 1.0 per kWh
    assert abs(m["energy_cost"] - (15 * 2.0 + 45 * 1.0)) < 1e-9
    assert m["energy_cost_by_period"] == {"default": 45.0, "peak": 30.0}
    assert (m["failures"], m["mtbf_s"], m["mttr_s"]) == (1, 2400.0, 300.0)
    assert m["good_parts_per_planned_hour"] == 35 * 3600 / 3000
    assert m["scrap_ratio"] == 5 / 40
    assert m["data_quality"] == {"ok": True, "flags": []}


def test_counter_reset_is_counted_not_negative_and_flagged() -> None:
    # The counters restart from 0 after 20 parts: 0..20, then 0..20 again (one more part each).
    counts = list(range(21)) + list(range(1, 21))
    m = _machine(_report(_shift(parts=counts, energy_reset_at=1200)))
    assert m["total_count"] == 40
    assert abs(m["energy_kwh"] - 60.0) < 1 / 60 + 1e-9  # at most the one interval across the reset
    kinds = {(f["kind"], f["signal"]) for f in m["data_quality"]["flags"]}
    assert ("counter_reset", "parts_total") in kinds and ("counter_reset", "energy_kwh") in kinds


def test_gap_and_bad_quality_are_flagged() -> None:
    samples = [s for s in _shift()
               if not (s.signal == "energy_kwh" and 1000 <= (s.ts - T0).total_seconds() < 1300)]
    samples.append(_s("energy_kwh", 1000, 0.0, Quality.BAD))
    m = _machine(_report(samples))
    flags = {f["kind"]: f for f in m["data_quality"]["flags"]}
    assert flags["telemetry_gap"]["signal"] == "energy_kwh" and flags["telemetry_gap"]["gap_s"] == 301.0
    assert flags["bad_quality_samples"]["count"] == 1
    assert abs(m["energy_kwh"] - 60.0) < 1e-9  # linear across the gap: the counter still tells the total


def test_no_data_is_flagged_not_guessed() -> None:
    m = _machine(_report([]))
    assert m["planned_time_s"] == 3000 and m["unknown_time_s"] == 3000 and m["availability"] == 0.0
    assert {f["kind"] for f in m["data_quality"]["flags"]} >= {"no_data", "unknown_state"}


def test_day_and_machine_grouping_give_the_same_totals() -> None:
    by_day = _machine(_report(_shift(), GroupBy.DAY))
    whole = _machine(_report(_shift(), GroupBy.MACHINE))
    for k in ("planned_time_s", "run_time_s", "total_count", "energy_kwh", "failures"):
        assert by_day[k] == whole[k]
