"""Energy cost with a time-of-use tariff (``zhizao.plant.Tariff``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from analytics.kpi.series import FloatArray
from zhizao.plant import Tariff


def period_edges(tariff: Tariff, tz: str, start: float, end: float) -> FloatArray:
    """Every instant in ``(start, end)`` where a tariff period starts or ends (local time of day)."""
    zone = ZoneInfo(tz)
    out: list[float] = []
    day = datetime.fromtimestamp(start, UTC).astimezone(zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end, UTC).astimezone(zone).date()
    while day <= last:
        for p in tariff.periods:
            for tod in (p.start, p.end):
                t = datetime.combine(day, tod, zone).timestamp()
                if start < t < end:
                    out.append(t)
        day += timedelta(days=1)
    return np.unique(np.array(out, np.float64))


def period_name(tariff: Tariff, tz: str, ts: float) -> tuple[str, float]:
    """The tariff period in force at ``ts`` and its price per kWh (``default`` outside periods)."""
    when = datetime.fromtimestamp(ts, UTC)
    price = tariff.price_at(when, tz)
    local = when.astimezone(ZoneInfo(tz)).time()
    for p in tariff.periods:
        inside = p.start <= local < p.end if p.start < p.end else (local >= p.start or local < p.end)
        if inside:
            return p.name, price
    return "default", price
