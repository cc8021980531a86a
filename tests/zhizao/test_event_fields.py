"""``zhizao.events.Event`` refuses what its stores cannot keep faithfully: control characters and
backslashes in the fields that become InfluxDB tags (``id``, ``rule``; ``asset`` is a checked path,
``source`` an enum), and unbounded ``message``/``rule``/``details`` — each error names its field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from zhizao.events import Event

MAX_DETAILS_BYTES = 16 * 1024

BASE = {"id": "ev-1", "source": "anomaly", "rule": "model v3: cnc", "asset": "plant/a1/line1/cnc-1",
        "start": datetime(2026, 11, 23, 8, tzinfo=UTC)}


@pytest.mark.parametrize(("change", "field"), [
    ({"rule": "oee\nlow"}, "rule"), ({"rule": "oee\rlow"}, "rule"), ({"rule": "a\x00b"}, "rule"),
    ({"rule": "tab\there"}, "rule"), ({"rule": "a\x85b"}, "rule"), ({"rule": "back\\slash"}, "rule"),
    ({"rule": "r" * 257}, "rule"), ({"id": "ev-1\n"}, "id"), ({"id": "ev\x7f1"}, "id"),
    ({"asset": "plant/a1\n"}, "asset"), ({"message": "m" * 4097}, "message"),
    ({"details": {"blob": "x" * MAX_DETAILS_BYTES}}, "details"),
])
def test_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Event.model_validate({**BASE, **change})
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_accepted_at_the_bounds() -> None:
    e = Event.model_validate({**BASE, "rule": "r" * 256, "message": "line one\nline two" + "m" * 4079,
                              "details": {"b": "x" * (MAX_DETAILS_BYTES - 10)}})
    assert len(e.message) == 4096
    assert Event.model_validate_json(e.model_dump_json()) == e
