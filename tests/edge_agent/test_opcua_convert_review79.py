"""OPC UA conversion, review 79: a LocalizedText without text (null) is no value — as before the
unsupported_type counting was added — not an unsupported type; an empty string or an empty
LocalizedText text is the value ``""``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from edge_agent.connectors.opcua.convert import Converter
from zhizao.model import AssetPath, Quality

ASSET = AssetPath("plant1", "a1", "line1", "cnc-1")
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def dv(value: Any, vtype: ua.VariantType, seconds: int) -> ua.DataValue:
    src: Any = T0 + timedelta(seconds=seconds)  # asyncua types it as its DateTime, a datetime
    return ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=src)


def converter() -> tuple[Converter, list[tuple[int, str, str]]]:
    reports: list[tuple[int, str, str]] = []
    conv = Converter([ASSET], ["state"], [None], report=lambda i, why, what: reports.append((i, why, what)))
    return conv, reports


def test_a_null_localized_text_is_no_value_not_an_unsupported_type() -> None:
    conv, reports = converter()
    assert conv.sample(0, dv(ua.LocalizedText(), ua.VariantType.LocalizedText, 0)) is None
    assert conv.skipped == {"repeat": 0, "no_value": 1, "unsupported_type": 0}
    assert reports == [(0, "no_value", "Good")]
    first = conv.sample(0, dv(ua.LocalizedText("running", "en"), ua.VariantType.LocalizedText, 1))
    assert first is not None and (first.value, first.quality) == ("running", Quality.GOOD)
    # after a value: the last one repeated as bad (the gap is visible), as for a null Variant
    gap = conv.sample(0, dv(ua.LocalizedText(Locale="en"), ua.VariantType.LocalizedText, 2))
    assert gap is not None and (gap.value, gap.quality) == ("running", Quality.BAD)
    assert conv.skipped["unsupported_type"] == 0 and len(reports) == 1


def test_empty_texts_are_the_empty_value() -> None:
    conv, reports = converter()
    a = conv.sample(0, dv("", ua.VariantType.String, 0))
    b = conv.sample(0, dv(ua.LocalizedText(""), ua.VariantType.LocalizedText, 1))
    assert a is not None and b is not None and (a.value, b.value) == ("", "")
    assert conv.skipped == {"repeat": 0, "no_value": 0, "unsupported_type": 0} and reports == []


def test_a_byte_string_is_still_unsupported() -> None:
    conv, reports = converter()
    assert conv.sample(0, dv(b"\x01", ua.VariantType.ByteString, 0)) is None
    assert conv.skipped["unsupported_type"] == 1 and reports == [(0, "unsupported_type", "ByteString")]
