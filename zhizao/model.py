"""The shared vocabulary: asset paths, qualities, samples and batches.

Everything that flows between zhizao components is a :class:`Sample`; samples travel in
:class:`Batch` es identified by ``(producer, batch_id)`` so a receiver can deduplicate resends.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

Value = float | int | bool | str

SEGMENT_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""One level of an asset path (also the form of ids that become one: a site, an agent's fleet id)."""
_SEGMENT_RE: Final = re.compile(SEGMENT_PATTERN)
_SIGNAL_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
MAX_STR_VALUE: Final = 1024
"""A string value is at most this many characters."""
MAX_UNIT: Final = 32
"""A unit is at most this many characters (``maxLength`` of ``unit`` in the published schemas)."""
LEVELS: Final = ("site", "area", "line", "machine")


class Quality(StrEnum):
    """How far a value can be trusted (OPC UA StatusCode severity, or the payload's word)."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


QUALITY_NAMES: Final = frozenset(q.value for q in Quality)
"""The words a ``quality`` field may hold."""
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63
"""Integer values lie in ``[INT_MIN, INT_MAX)``: signed 64-bit."""


def valid_segment(text: str) -> bool:
    """True when ``text`` may be one level of an asset path (no ``/``, no wildcards)."""
    return bool(_SEGMENT_RE.fullmatch(text))


def check_asset_prefix(text: str) -> str:
    """Validate a 1-4 level asset prefix (``site``, ``site/area``, ... ``site/area/line/machine``):
    the scope of a query, a KPI or an event. Returns it unchanged; raises ``ValueError`` naming
    the bad level."""
    parts = text.split("/")
    if not 1 <= len(parts) <= len(LEVELS):
        raise ValueError(f"{text!r} must be 1 to 4 levels site/area/line/machine")
    for level, part in zip(LEVELS, parts, strict=False):
        if not valid_segment(part):
            raise ValueError(f"{text!r}: {level} {part!r} is invalid: use 1-64 letters, digits, "
                             "'_', '.', '-' (not starting with '_', '.', '-')")
    return text


def valid_signal(text: str) -> bool:
    """True when ``text`` is a valid signal name (``spindle_speed``, ``axis.x.load``)."""
    return bool(_SIGNAL_RE.fullmatch(text))


def valid_id(text: str) -> bool:
    """True when ``text`` is a valid producer or batch id."""
    return bool(_ID_RE.fullmatch(text))


@dataclass(frozen=True, slots=True, order=True)
class AssetPath:
    """An ISA-95 equipment path: ``site/area/line/machine``.

    Each level matches ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``, so the path can be a URL path,
    an MQTT topic suffix and a set of InfluxDB tags without escaping.
    """

    site: str
    area: str
    line: str
    machine: str

    def __post_init__(self) -> None:
        for level, value in zip(LEVELS, (self.site, self.area, self.line, self.machine), strict=True):
            if not isinstance(value, str) or not valid_segment(value):
                raise ValueError(
                    f"asset path {level} {value!r} is invalid: use 1-64 letters, digits, '_', '.', '-'"
                )

    @classmethod
    def parse(cls, text: str) -> AssetPath:
        """Parse ``"site/area/line/machine"``; raises ``ValueError`` naming what is wrong."""
        if not isinstance(text, str):
            raise ValueError(f"asset path must be a string, got {type(text).__name__}")
        parts = text.split("/")
        if len(parts) != len(LEVELS):
            raise ValueError(
                f"asset path {text!r} must have 4 levels site/area/line/machine, it has {len(parts)}"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.site}/{self.area}/{self.line}/{self.machine}"

    @property
    def line_path(self) -> str:
        """``site/area/line``: the scope of the production line this machine belongs to."""
        return f"{self.site}/{self.area}/{self.line}"


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one signal of one machine at one instant.

    ``ts`` is timezone-aware UTC: the source timestamp where the source gives one, else the
    time the value was read. ``value`` is never NaN or infinite (use quality ``bad`` and the
    last value, or no sample, for a missing reading).
    """

    asset: AssetPath
    signal: str
    ts: datetime
    value: Value
    unit: str | None = None
    quality: Quality = Quality.GOOD

    def __post_init__(self) -> None:
        if not valid_signal(self.signal):
            raise ValueError(f"signal name {self.signal!r} is invalid")
        if self.ts.tzinfo is None or self.ts.utcoffset() != UTC.utcoffset(None):
            raise ValueError("ts must be timezone-aware UTC")
        check_value(self.value)


_new = object.__new__
_set = object.__setattr__


def trusted_sample(  # noqa: PLR0917 - mirrors Sample(...)
    asset: AssetPath, signal: str, ts: datetime, value: Value, unit: str | None, quality: Quality
) -> Sample:
    """A :class:`Sample` whose fields the caller has already checked as ``Sample.__post_init__``
    checks them (valid signal name, aware UTC ``ts``, valid value), built without running those
    checks again (~3x faster): the simulator engine (valid by construction) and the MQTT payload
    mapper (checked once per message). ``tests/edge_agent/test_mapping.py`` pins ``Sample``'s
    fields to the ones set here."""
    sample: Sample = _new(Sample)
    _set(sample, "asset", asset)
    _set(sample, "signal", signal)
    _set(sample, "ts", ts)
    _set(sample, "value", value)
    _set(sample, "unit", unit)
    _set(sample, "quality", quality)
    return sample


def check_value(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite float, a 64-bit int, a bool or a short str."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value < INT_MAX:
            raise ValueError("integer value outside the signed 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("value must be finite (NaN and infinity are not allowed)")
        return
    if isinstance(value, str):
        if len(value) > MAX_STR_VALUE:
            raise ValueError(f"string value longer than {MAX_STR_VALUE} characters")
        return
    raise ValueError(f"value must be a number, boolean or string, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Batch:
    """Samples sent together.

    ``(producer, batch_id)`` identifies the batch for deduplication: a resend of the same
    samples carries the same ``batch_id``. ``seq`` increases by one per batch a producer
    creates, so a receiver can see gaps; it is informative, dedup does not rely on it.
    """

    producer: str
    batch_id: str
    seq: int
    samples: tuple[Sample, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not valid_id(self.producer):
            raise ValueError(f"producer id {self.producer!r} is invalid")
        if not valid_id(self.batch_id):
            raise ValueError(f"batch id {self.batch_id!r} is invalid")
        if self.seq < 0:
            raise ValueError("seq must be >= 0")

    def __len__(self) -> int:
        return len(self.samples)


def utc(ts: datetime) -> datetime:
    """Return ``ts`` as timezone-aware UTC (naive datetimes are taken as UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
