"""Shift calendar arithmetic: planned time, breaks, night shifts, time zones, tariffs."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from zhizao.config import load_config, read_document
from zhizao.errors import ConfigError
from zhizao.plant import Break, PlantConfig, Shift, ShiftCalendar, Tariff, TariffPeriod, iter_days

DAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
ROOT = Path(__file__).resolve().parents[2]


def cal(**kw: object) -> ShiftCalendar:
    shifts = [
        Shift(name="early", start=time(6), end=time(14), breaks=[Break(start=time(10), end=time(10, 30))]),
        Shift(name="night", start=time(22), end=time(6), breaks=[Break(start=time(2), end=time(2, 30))]),
    ]
    return ShiftCalendar(shifts=shifts, **kw)


def test_day_shift_minus_break() -> None:
    ws = [w for w in cal().windows(DAY, DAY + timedelta(days=1)) if w.shift == "early"]
    assert len(ws) == 1
    w = ws[0]
    assert w.id == "2026-11-23/early"
    assert w.planned == [(DAY.replace(hour=6), DAY.replace(hour=10)), (DAY.replace(hour=10, minute=30),
                                                                       DAY.replace(hour=14))]
    assert w.planned_seconds == 7.5 * 3600


def test_night_shift_wraps_midnight_and_its_break_is_on_the_second_day() -> None:
    ws = cal().windows(DAY, DAY + timedelta(days=2))
    night = next(w for w in ws if w.id == "2026-11-23/night")
    assert night.start == DAY.replace(hour=22) and night.end == DAY.replace(day=24, hour=6)
    assert night.planned_seconds == 7.5 * 3600
    # the night shift that started the previous evening is clipped to the window
    first = ws[0]
    assert first.id == "2026-11-22/night" and first.start == DAY and first.planned_seconds == 5.5 * 3600


def test_time_zone_and_weekdays() -> None:
    c = ShiftCalendar(timezone="Asia/Shanghai", shifts=[Shift(name="d", start=time(8), end=time(16),
                                                                weekdays=[0, 1, 2, 3, 4])])
    ws = c.windows(DAY, DAY + timedelta(days=7))
    assert [w.id for w in ws][:2] == ["2026-11-23/d", "2026-11-24/d"]
    assert len(ws) == 5
    assert ws[0].start == DAY.replace(hour=0)  # 08:00 in Shanghai
    assert c.is_planned(DAY.replace(hour=3)) and not c.is_planned(DAY.replace(hour=9))


def test_validation_errors() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        ShiftCalendar(timezone="Mars/Base", shifts=[Shift(name="a", start=time(1), end=time(2))])
    with pytest.raises(ValidationError, match="weekdays"):
        Shift(name="a", start=time(1), end=time(2), weekdays=[9])
    with pytest.raises(ValidationError, match="listed twice"):
        PlantConfig.model_validate({"calendar": {"shifts": [{"name": "a", "start": "06:00", "end": "14:00"}]},
                                    "machines": [{"asset": "p/a/l/m"}, {"asset": "p/a/l/m"}]})


def test_tariff_time_of_use() -> None:
    t = Tariff(default_price_per_kwh=0.6, periods=[TariffPeriod(name="peak", start=time(8), end=time(11),
                                                                price_per_kwh=1.2),
                                                   TariffPeriod(name="valley", start=time(23), end=time(7),
                                                                price_per_kwh=0.3)])
    assert t.price_at(DAY.replace(hour=9)) == 1.2
    assert t.price_at(DAY.replace(hour=2)) == 0.3
    assert t.price_at(DAY.replace(hour=15)) == 0.6


def test_iter_days() -> None:
    days = list(iter_days(DAY + timedelta(hours=12), DAY + timedelta(days=2)))
    assert days[0] == (DAY + timedelta(hours=12), DAY + timedelta(days=1)) and len(days) == 2


def _shifts(*specs: tuple[str, str, str, list[int]]) -> list[dict[str, object]]:
    return [{"name": n, "start": a, "end": b, "weekdays": d} for n, a, b, d in specs]


ALL = [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(("shifts", "words"), [
    # the review's plant file: the second shift moved to start inside the first
    (_shifts(("early", "08:00", "09:00", ALL), ("second", "08:30", "10:00", ALL)),
     "shifts[0] 'early' (08:00:00-09:00:00) and shifts[1] 'second' (08:30:00-10:00:00) overlap every day"),
    # a night shift running past the next morning's start
    (_shifts(("early", "06:00", "14:00", ALL), ("night", "22:00", "06:30", ALL)),
     "shifts[0] 'early' (06:00:00-14:00:00) and shifts[1] 'night' (22:00:00-06:30:00) overlap every day"),
    # Sunday's night shift runs into Monday's early shift (the week wraps)
    (_shifts(("early", "06:00", "14:00", [0]), ("night", "22:00", "06:30", [6])), "overlap on Monday"),
    # only the weekdays both run are compared
    (_shifts(("a", "08:00", "12:00", [0, 2]), ("b", "11:00", "13:00", [2, 4])), "overlap on Wednesday"),
    # a 24-h shift (end == start) covers every other shift of its day
    (_shifts(("all", "06:00", "06:00", [3]), ("x", "10:00", "11:00", [3])), "overlap on Thursday"),
    # the same times under two names
    (_shifts(("a", "08:00", "12:00", ALL), ("b", "08:00", "12:00", [1])), "overlap on Tuesday"),
])
def test_overlapping_shifts_are_refused_naming_both(shifts: list[dict[str, object]], words: str) -> None:
    """Overlapping shifts used to be accepted: their planned time was counted twice (more planned
    time than wall time, availability too low, data quality ok)."""
    with pytest.raises(ValidationError, match="must not overlap") as err:
        ShiftCalendar.model_validate({"shifts": shifts})
    assert words in str(err.value)


@pytest.mark.parametrize("shifts", [
    _shifts(("day", "06:00", "14:00", ALL), ("late", "14:00", "22:00", ALL),
            ("night", "22:00", "06:00", ALL)),
    _shifts(("early", "06:00", "14:00", [0]), ("night", "22:00", "06:30", [5])),   # Saturday night only
    _shifts(("a", "08:00", "12:00", [0, 1]), ("b", "10:00", "13:00", [2, 3])),     # other weekdays
    _shifts(("all", "06:00", "06:00", ALL)),
])
def test_adjacent_or_disjoint_shifts_are_accepted(shifts: list[dict[str, object]]) -> None:
    ShiftCalendar.model_validate({"shifts": shifts})


def test_overlap_is_reported_by_key_in_a_plant_file_and_a_simulator_scenario(tmp_path: Path) -> None:
    """The simulator's scenarios use the same calendar model: the same refusal, by key, exit 2."""
    from simulator.cli import main as sim_main
    from simulator.scenario import load_scenario

    plant = tmp_path / "plant.toml"
    plant.write_text('[calendar]\n[[calendar.shifts]]\nname = "early"\nstart = "08:00"\nend = "09:00"\n'
                     '[[calendar.shifts]]\nname = "second"\nstart = "08:30"\nend = "10:00"\n')
    with pytest.raises(ConfigError, match=r"calendar: shifts\[0\] 'early' .* and shifts\[1\] 'second'"):
        load_config(PlantConfig, plant)
    doc = read_document(ROOT / "examples/compact.yaml")
    doc["calendar"]["shifts"][1]["start"] = "08:30:00"
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"calendar: shifts\[0\] 'early' .* overlap every day"):
        load_scenario(scenario)
    assert sim_main(["export-plant", "--scenario", str(scenario), "--out", str(tmp_path / "p.toml")]) == 2
    assert not (tmp_path / "p.toml").exists()


def test_every_shipped_calendar_validates() -> None:
    """The example and stack scenarios, the e2e scenario and the compose plant file have no
    overlapping shifts (their calendars pass the check above)."""
    from simulator.scenario import load_scenario

    for name in ("examples/compact.yaml", "examples/workshop.toml", "examples/improved.toml",
                 "zhizao/stack/scenarios/demo.yaml"):
        assert load_scenario(ROOT / name).calendar.shifts, name
    assert load_config(PlantConfig, ROOT / "deploy/compose/config/plant.toml").calendar.shifts
    e2e = read_document(ROOT / "tests/e2e/scenarios/ci.yaml")
    assert ShiftCalendar.model_validate(e2e["calendar"]).shifts
