"""Events: KPI alerts and anomaly episodes share one model and one lifecycle.

An event is opened when a condition starts (a KPI crosses its threshold, an anomaly score
stays above the model's threshold), updated while it lasts (``peak``), and resolved when it
clears. The same ``id`` is used for all three, so stores upsert on it and consumers see one
episode, not three messages. Published as JSON on ``zhizao/v1/alerts/<asset>/<source>/<rule>``
(:func:`zhizao.topics.event_topic`) and to webhooks,
stored by ingest and served at ``GET /api/v1/events``.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from zhizao.model import check_asset_prefix

MAX_RULE: Final = 256
"""Characters of ``Event.rule``."""
MAX_MESSAGE: Final = 4096
"""Characters of ``Event.message``."""
MAX_DETAILS_BYTES: Final = 16 * 1024
"""``Event.details`` as compact JSON (UTF-8), in bytes."""
MAX_CONTRIBUTORS: Final = 1000


def check_tag_text(text: str) -> str:
    """``text`` unchanged unless it holds a control character (line breaks, tabs, NUL ...: Unicode
    category Cc) or a backslash — what a field stored as an InfluxDB tag (``id``, ``rule``) cannot
    carry faithfully (``ingest/storage/influxdb/lineproto.py``); ``ValueError`` naming it then."""
    for i, c in enumerate(text):
        if c == "\\" or unicodedata.category(c) == "Cc":
            raise ValueError(f"must not contain control characters or backslashes; found {c!r} at {i}")
    return text


class EventSource(StrEnum):
    KPI = "kpi"
    ANOMALY = "anomaly"
    SYSTEM = "system"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class EventState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Contributor(BaseModel):
    """A signal that drove an anomaly score, with its share of the score (0..1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: str
    weight: float


class Event(BaseModel):
    """One alert or anomaly episode. ``asset`` is a machine path or a wider scope
    (``site/area/line``: 1-4 levels, each as in :func:`zhizao.model.valid_segment`); ``rule``
    names the KPI rule or the model that raised it. ``end``, when set, is not before ``start``.
    (Validated when an event is built or parsed; ``model_copy`` does not validate.)"""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,255}$")
    source: EventSource
    rule: str = Field(max_length=MAX_RULE)
    """No control characters, no backslash (:func:`check_tag_text`): stored as a tag."""
    asset: str
    severity: Severity = Severity.WARNING
    state: EventState = EventState.OPEN
    start: AwareDatetime
    end: AwareDatetime | None = None
    value: float | None = None
    """The KPI value or anomaly score when the event was last updated."""
    peak: float | None = None
    """The worst value/score seen during the episode."""
    threshold: float | None = None
    message: str = Field("", max_length=MAX_MESSAGE)
    contributors: list[Contributor] = Field(default_factory=list, max_length=MAX_CONTRIBUTORS)
    details: dict[str, Any] = Field(default_factory=dict)
    """At most ``MAX_DETAILS_BYTES`` as JSON."""

    @field_validator("asset")
    @classmethod
    def _check_asset(cls, asset: str) -> str:
        return check_asset_prefix(asset)

    @field_validator("id", "rule")
    @classmethod
    def _check_tag(cls, text: str) -> str:
        return check_tag_text(text)

    @field_validator("details")
    @classmethod
    def _check_details(cls, details: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(details, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > MAX_DETAILS_BYTES:
            raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_DETAILS_BYTES}")
        return details

    @field_validator("end")
    @classmethod
    def _check_end(cls, end: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start")
        if end is not None and start is not None and end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        return end

    def resolved(self, end: datetime, value: float | None = None) -> Event:
        """A copy of this event closed at ``end``."""
        return self.model_copy(update={"state": EventState.RESOLVED, "end": end,
                                       "value": self.value if value is None else value})
