"""KPI windows for a query: per shift, per local day, or the whole range (``group_by``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from analytics.kpi.engine import Window
from zhizao.plant import ShiftCalendar, iter_days
from zhizao.wire import format_ts


class GroupBy(StrEnum):
    SHIFT = "shift"
    DAY = "day"
    MACHINE = "machine"
    """One window for the whole range, one record per machine."""


def _ep(ivs: list[tuple[datetime, datetime]]) -> list[tuple[float, float]]:
    return [(a.timestamp(), b.timestamp()) for a, b in ivs]


def make_windows(calendar: ShiftCalendar, start: datetime, end: datetime, group_by: GroupBy) -> list[Window]:
    """Windows covering ``[start, end)``: shift occurrences (clipped), local days, or one window."""
    if end <= start:
        raise ValueError("'to' must be after 'from'")
    if group_by is GroupBy.SHIFT:
        return [Window(w.id, w.start.timestamp(), w.end.timestamp(), _ep(w.planned))
                for w in calendar.windows(start, end)]
    if group_by is GroupBy.DAY:
        zone = ZoneInfo(calendar.timezone)
        return [Window(a.astimezone(zone).date().isoformat(), a.timestamp(), b.timestamp(),
                       _ep(calendar.planned_intervals(a, b)))
                for a, b in iter_days(start, end, calendar.timezone)]
    return [Window(f"{format_ts(start)}/{format_ts(end)}", start.timestamp(), end.timestamp(),
                   _ep(calendar.planned_intervals(start, end)))]
