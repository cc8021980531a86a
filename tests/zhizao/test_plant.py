"""Shift calendar arithmetic: planned time, breaks, night shifts, time zones, tariffs."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from zhizao.plant import Break, PlantConfig, Shift, ShiftCalendar, Tariff, TariffPeriod, iter_days

DAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday


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
