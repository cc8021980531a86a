"""Buffer rows: ``encode_samples`` (what ``SqliteBuffer.submit`` uses) writes exactly the bytes of
``orjson.dumps(sample_to_dict(s))`` for every sample, whatever it shares with its neighbours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from edge_agent.buffer.codec import SampleDecoder, encode_sample, encode_samples
from zhizao.model import AssetPath, Quality, Sample
from zhizao.wire import sample_to_dict


def varied() -> list[Sample]:
    a = AssetPath("plant1", "a1", "line1", "cnc-1")
    b = AssetPath("plant1", "a1", "line1", "cnc-2")
    whole = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
    micro = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
    out = [
        Sample(a, "spindle_speed", whole, 1200.5, "rpm"),
        Sample(a, "parts_total", whole, 12, "pcs"),  # same asset and ts objects as the one before
        Sample(a, "door_open", whole, True),  # unit None
        Sample(a, "state", whole, "running", None, Quality.UNCERTAIN),
        Sample(a, "axis.x.load", micro, -0.0, "%", Quality.BAD),
        Sample(b, "axis.x.load", micro, 2**63 - 1),  # another asset, same ts object
        Sample(AssetPath("plant1", "a1", "line1", "cnc-1"), "t", whole, 1e-7),  # equal asset, new object
        Sample(a, "t", datetime(2026, 11, 23, 8, 0, tzinfo=UTC), 1.0),  # equal ts, new object
        Sample(a, "t", whole + timedelta(microseconds=1), False, "", Quality.GOOD),
        Sample(a, "t", datetime(1, 1, 1, tzinfo=UTC), -(2**63)),  # year 1: still 27 characters
        Sample(a, "name_u", micro, 'quote " and \\ and ü', "°C"),
    ]
    return out + out[::-1]  # every transition both ways


def test_encode_samples_is_byte_identical_to_the_wire_dict() -> None:
    samples = varied()
    rows = encode_samples(samples)
    assert rows == [orjson.dumps(sample_to_dict(s)) for s in samples]
    assert rows == [encode_sample(s) for s in samples]
    assert encode_samples(iter(samples)) == rows and encode_samples([]) == []
    decoder = SampleDecoder()
    assert [decoder.decode(r) for r in rows] == samples
