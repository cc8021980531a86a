"""The plant description KPIs need: shift calendar, ideal cycle times, energy tariff.

The simulator exports one for its scenario (``zhizao sim export-plant``); plant engineers write
their own (``examples/plant.toml``). Times of day are local to ``calendar.timezone``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from zhizao.config import StrictModel
from zhizao.model import AssetPath


class Break(StrictModel):
    """An unplanned-production pause inside a shift (lunch, tea); local times of day."""

    start: time
    end: time


class Shift(StrictModel):
    """A shift: local start and end time (``end <= start`` means it ends the next day),
    the weekdays it runs (0 = Monday), and its breaks."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,32}$")
    start: time
    end: time
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    breaks: list[Break] = Field(default_factory=list)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        if not v or any(d < 0 or d > 6 for d in v):
            raise ValueError("weekdays must be a non-empty list of 0 (Monday) .. 6 (Sunday)")
        return sorted(set(v))


class ShiftWindow(StrictModel):
    """One occurrence of a shift: ``id`` is ``<local start date>/<shift name>``."""

    id: str
    shift: str
    start: datetime
    end: datetime
    planned: list[tuple[datetime, datetime]]
    """Planned production intervals: the shift minus its breaks, in UTC, ordered."""

    @property
    def planned_seconds(self) -> float:
        return sum((b - a).total_seconds() for a, b in self.planned)


class ShiftCalendar(StrictModel):
    """The plant's shifts in ``timezone``; no two may overlap (:meth:`_no_overlap`)."""

    timezone: str = "UTC"
    shifts: list[Shift] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @model_validator(mode="after")
    def _no_overlap(self) -> ShiftCalendar:
        """Refuse shifts that overlap (on a weekday they share, or a shift wrapping midnight into
        the next day's shift): planned time would count the shared span twice and exceed the wall
        clock. Compared in local times of day over a week (Sunday night wraps into Monday)."""
        for i, si in enumerate(self.shifts):
            for j in range(i + 1, len(self.shifts)):
                sj = self.shifts[j]
                days = sorted({int(max(a1, a2 + k) // 86400) % 7
                               for a1, b1 in _week_spans(si) for a2, b2 in _week_spans(sj)
                               for k in (-_WEEK_S, 0, _WEEK_S) if a2 + k < b1 and a1 < b2 + k})
                if days:
                    when = "every day" if len(days) == 7 else "on " + ", ".join(_DAYS[d] for d in days)
                    raise ValueError(
                        f"shifts[{i}] {si.name!r} ({_hm(si)}) and shifts[{j}] {sj.name!r} ({_hm(sj)}) "
                        f"overlap {when}: shifts must not overlap (planned time would be counted "
                        "twice); end one where the other starts")
        return self

    def windows(self, start: datetime, end: datetime) -> list[ShiftWindow]:
        """Every shift occurrence overlapping ``[start, end)``, clipped to it, ordered by start."""
        tz = ZoneInfo(self.timezone)
        out: list[ShiftWindow] = []
        day = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date()
        while day <= last:
            for shift in self.shifts:
                if day.weekday() not in shift.weekdays:
                    continue
                s, e = _span(day, shift.start, shift.end, tz)
                cs, ce = max(s, start), min(e, end)
                if cs >= ce:
                    continue
                planned = _subtract(
                    [(cs, ce)], [_span_within(day, b.start, b.end, shift.start, tz) for b in shift.breaks]
                )
                window_id = f"{day.isoformat()}/{shift.name}"
                out.append(ShiftWindow(id=window_id, shift=shift.name, start=cs, end=ce, planned=planned))
            day += timedelta(days=1)
        out.sort(key=lambda w: w.start)
        return out

    def planned_intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """Planned production time inside ``[start, end)`` as ordered UTC intervals."""
        return [iv for w in self.windows(start, end) for iv in w.planned]

    def is_planned(self, ts: datetime) -> bool:
        """True when ``ts`` falls in planned production time."""
        return bool(self.planned_intervals(ts, ts + timedelta(microseconds=1)))


class MachineSpec(StrictModel):
    """A machine and the ideal cycle time (seconds per part) of each product it makes."""

    asset: str
    kind: str = ""
    ideal_cycle_time_s: dict[str, float] = Field(default_factory=dict)

    @field_validator("asset")
    @classmethod
    def _asset(cls, v: str) -> str:
        AssetPath.parse(v)
        return v

    @field_validator("ideal_cycle_time_s")
    @classmethod
    def _ict(cls, v: dict[str, float]) -> dict[str, float]:
        if any(x <= 0 for x in v.values()):
            raise ValueError("ideal cycle times must be > 0 seconds")
        return v


class TariffPeriod(StrictModel):
    """A time-of-use period: local ``start``..``end`` (wrapping midnight if ``end <= start``)."""

    name: str
    start: time
    end: time
    price_per_kwh: float = Field(ge=0)


class Tariff(StrictModel):
    currency: str = "CNY"
    default_price_per_kwh: float = Field(0.8, ge=0)
    periods: list[TariffPeriod] = Field(default_factory=list)

    def price_at(self, ts: datetime, tz: str = "UTC") -> float:
        local = ts.astimezone(ZoneInfo(tz)).time()
        for p in self.periods:
            inside = p.start <= local < p.end if p.start < p.end else (local >= p.start or local < p.end)
            if inside:
                return p.price_per_kwh
        return self.default_price_per_kwh


class PlantConfig(StrictModel):
    calendar: ShiftCalendar
    machines: list[MachineSpec] = Field(default_factory=list)
    tariff: Tariff = Tariff()

    @model_validator(mode="after")
    def _unique(self) -> PlantConfig:
        seen: set[str] = set()
        for m in self.machines:
            if m.asset in seen:
                raise ValueError(f"machine {m.asset} is listed twice")
            seen.add(m.asset)
        return self

    def machine(self, asset: str) -> MachineSpec | None:
        return next((m for m in self.machines if m.asset == asset), None)


_WEEK_S = 7 * 86400
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _seconds(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def _week_spans(shift: Shift) -> list[tuple[float, float]]:
    """The shift's occurrences as ``[start, end)`` seconds from Monday 00:00 local (an end past
    Sunday midnight runs past ``_WEEK_S``)."""
    a, b = _seconds(shift.start), _seconds(shift.end)
    length = b - a if b > a else b - a + 86400
    return [(d * 86400 + a, d * 86400 + a + length) for d in shift.weekdays]


def _hm(shift: Shift) -> str:
    return f"{shift.start.isoformat()}-{shift.end.isoformat()}"


def _span(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    s = datetime.combine(day, start, tz)
    e = datetime.combine(day if end > start else day + timedelta(days=1), end, tz)
    return s.astimezone(UTC), e.astimezone(UTC)


def _span_within(
    day: date, start: time, end: time, shift_start: time, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    # A break that starts before the shift's start time of day lies on the shift's second day.
    d = day + timedelta(days=1) if start < shift_start else day
    return _span(d, start, end, tz)


def _subtract(
    intervals: list[tuple[datetime, datetime]], holes: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    out = intervals
    for hs, he in holes:
        nxt: list[tuple[datetime, datetime]] = []
        for s, e in out:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return sorted(out)


def iter_days(start: datetime, end: datetime, tz: str = "UTC") -> Iterator[tuple[datetime, datetime]]:
    """Local calendar days overlapping ``[start, end)``, as clipped UTC intervals."""
    zone = ZoneInfo(tz)
    day = start.astimezone(zone).date()
    while True:
        s = datetime.combine(day, time(0), zone).astimezone(UTC)
        e = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
        if s >= end:
            return
        yield max(s, start), min(e, end)
        day += timedelta(days=1)
