"""OPC UA DataValue → :class:`~zhizao.model.Sample`: source timestamp, StatusCode → quality.

Quality follows the StatusCode severity bits: Good → ``good``, Uncertain → ``uncertain``,
Bad → ``bad``. A Bad value without a usable value (OPC UA sends null) repeats the last good
value with quality ``bad`` so the gap is visible; with no earlier value it yields nothing.
The timestamp is the SourceTimestamp, else the ServerTimestamp, else the time of receipt.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from zhizao.model import MAX_STR_VALUE, AssetPath, Quality, Sample, Value


def quality_of(status: Any) -> Quality:
    """Quality of a ``ua.StatusCode`` (``None`` = Good)."""
    if status is None:
        return Quality.GOOD
    severity = (int(status.value) >> 30) & 0x3
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def plain_value(value: Any) -> Value | None:
    """A zhizao value for an OPC UA scalar, or ``None`` when it has no zhizao form (arrays, null)."""
    if isinstance(value, bool | int | str):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return float(value)
        return value[:MAX_STR_VALUE] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    text = getattr(value, "Text", None)  # LocalizedText
    if isinstance(text, str):
        return text[:MAX_STR_VALUE]
    return None


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class Converter:
    """Converts DataValues of one connector's tags; remembers each tag's last value and timestamp.

    A value with the same source timestamp as the last one collected for its tag is a repeat
    (the initial notification after a re-subscribe re-sends the current value) and is skipped, so
    a reconnect never produces a duplicate; a clock going backwards is data, not a repeat.
    ``last_ts`` is seeded from the marks committed with the samples in the buffer.
    """

    def __init__(
        self,
        assets: list[AssetPath],
        signals: list[str],
        units: list[str | None],
        last_ts: list[datetime | None] | None = None,
    ) -> None:
        self.assets = assets
        self.signals = signals
        self.units = units
        self.last: list[Value | None] = [None] * len(assets)
        self.last_ts: list[datetime | None] = last_ts or [None] * len(assets)
        self.skipped = 0
        self.repeats = 0

    def sample(self, index: int, dv: Any) -> Sample | None:
        """The sample of tag ``index`` for DataValue ``dv``, or ``None`` (counted in ``skipped``)."""
        quality = quality_of(dv.StatusCode)
        variant = dv.Value
        value = plain_value(variant.Value) if variant is not None else None
        if value is None:
            value = self.last[index]
            if value is None:
                self.skipped += 1
                return None
            quality = Quality.BAD
        elif quality is not Quality.BAD:
            self.last[index] = value
        ts = _utc(dv.SourceTimestamp) or _utc(dv.ServerTimestamp) or datetime.now(UTC)
        prev = self.last_ts[index]
        if prev is not None and ts == prev:
            self.repeats += 1
            return None
        self.last_ts[index] = ts
        return Sample(self.assets[index], self.signals[index], ts, value, self.units[index], quality)
