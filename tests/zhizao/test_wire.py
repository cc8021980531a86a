"""The wire format: round trips, strict errors naming field and position, fuzzing."""

from __future__ import annotations

import contextlib
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhizao import AssetPath, Batch, Quality, Sample, WireFormatError
from zhizao.wire import decode_batch, decode_batch_lenient, decompress, encode_batch, format_ts, parse_ts

SCHEMA = json.loads((Path(__file__).parents[2] / "zhizao/schema/batch-v1.schema.json").read_text())
ASSET = AssetPath("plant", "a1", "line1", "cnc-1")
T0 = datetime(2026, 11, 23, 8, 0, 0, 250000, tzinfo=UTC)

segments = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,10}\Z")
signals = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.\-]{0,12}\Z")
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.text(max_size=40),
)
timestamps = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
samples = st.builds(
    Sample,
    asset=st.builds(AssetPath, segments, segments, segments, segments),
    signal=signals,
    ts=timestamps,
    value=values,
    unit=st.one_of(st.none(), st.sampled_from(["degC", "bar", "kW", "kWh", "rpm", "mm/s"])),
    quality=st.sampled_from(list(Quality)),
)
batches = st.builds(
    Batch,
    producer=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}\Z"),
    batch_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}\Z"),
    seq=st.integers(min_value=0, max_value=2**62),
    samples=st.lists(samples, max_size=8).map(tuple),
)


@given(batches, st.booleans())
@settings(max_examples=300)
def test_round_trip(batch: Batch, compress: bool) -> None:
    data = encode_batch(batch, compress=compress)
    assert decode_batch(data) == batch


@given(batches)
@settings(max_examples=100)
def test_encoded_documents_match_the_published_schema(batch: Batch) -> None:
    jsonschema.validate(orjson.loads(encode_batch(batch)), SCHEMA)


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_wire_format_error(data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        decode_batch(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=500)
def test_arbitrary_json_raises_only_wire_format_error(doc: object) -> None:
    for candidate in (
        doc,
        {
            "format": "zhizao.batch",
            "version": 1,
            "producer": "p",
            "batch_id": "b",
            "seq": 0,
            "samples": [doc],
        },
    ):
        with contextlib.suppress(WireFormatError):
            decode_batch(json.dumps(candidate).encode())


def _doc(**sample_overrides: object) -> dict[str, object]:
    good = {
        "asset": "plant/a1/line1/cnc-1",
        "signal": "spindle_speed",
        "ts": "2026-11-23T08:00:00Z",
        "value": 1.5,
        "unit": "rpm",
    }
    bad = {**good, **sample_overrides}
    return {
        "format": "zhizao.batch",
        "version": 1,
        "producer": "agent-1",
        "batch_id": "b-1",
        "seq": 3,
        "samples": [dict(good), dict(good), bad],
    }


@pytest.mark.parametrize(
    ("override", "path", "words"),
    [
        ({"ts": "2026-11-23T08:00:00"}, "samples[2].ts", "no UTC offset"),
        ({"ts": 1700000000}, "samples[2].ts", "RFC 3339"),
        ({"asset": "plant/line1/cnc-1"}, "samples[2].asset", "4 levels"),
        ({"asset": "plant/a1/line 1/cnc-1"}, "samples[2].asset", "line"),
        ({"value": [1, 2]}, "samples[2].value", "number, boolean or string"),
        ({"value": None}, "samples[2].value", "number, boolean or string"),
        ({"quality": "great"}, "samples[2].quality", "good, uncertain, bad"),
        ({"signal": "9lives"}, "samples[2].signal", "invalid signal"),
        # Python's '$' also matches before a final newline: a name ending in one once passed,
        # then broke InfluxDB's line protocol for the whole site (security review, session 12)
        ({"signal": "spindle_speed\n"}, "samples[2].signal", "invalid signal"),
        ({"asset": "plant/a1/line1/cnc-1\n"}, "samples[2].asset", "machine"),
        ({"asset": "plant/a1\n/line1/cnc-1"}, "samples[2].asset", "area"),
        ({"colour": "red"}, "samples[2].colour", "unknown field"),
    ],
)
def test_errors_name_field_and_position(override: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(WireFormatError) as info:
        decode_batch(orjson.dumps(_doc(**override)))
    assert info.value.path == path
    assert words in info.value.message


def test_missing_sample_field_is_named() -> None:
    doc = _doc()
    del doc["samples"][1]["ts"]  # type: ignore[index]
    with pytest.raises(WireFormatError) as info:
        decode_batch(orjson.dumps(doc))
    assert info.value.path == "samples[1].ts"
    assert "missing" in info.value.message


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"format": "other"}, "format"),
        ({"version": 3}, "version"),
        ({"seq": -1}, "seq"),
        ({"producer": ""}, "producer"),
        ({"batch_id": "has space"}, "batch_id"),
        ({"samples": {}}, "samples"),
        ({"extra": 1}, "extra"),
    ],
)
def test_envelope_errors(change: dict[str, object], path: str) -> None:
    with pytest.raises(WireFormatError) as info:
        decode_batch(orjson.dumps({**_doc(), **change}))
    assert info.value.path == path


def test_syntax_error_and_gzip_errors_are_wire_errors() -> None:
    with pytest.raises(WireFormatError, match="not valid JSON"):
        decode_batch(b'{"format": ')
    with pytest.raises(WireFormatError, match="gzip"):
        decode_batch(b"\x1f\x8b\x08\x00garbage")
    bomb = gzip.compress(b" " * 2_000_000)
    with pytest.raises(WireFormatError, match="inflates to more than"):
        decode_batch(bomb, max_bytes=1_000_000)


def test_lenient_decoding_keeps_valid_samples_and_reports_rejected_ones() -> None:
    batch, rejected = decode_batch_lenient(
        orjson.dumps(_doc(value=float("inf")) | {}).replace(b"Infinity", b"1e999")
    )
    assert len(batch.samples) == 2
    assert set(rejected) == {2}
    assert rejected[2].startswith("value:")


def test_timestamps_are_utc_with_microseconds() -> None:
    assert format_ts(T0) == "2026-11-23T08:00:00.250000Z"
    local = parse_ts("2026-11-23T16:00:00.250+08:00")
    assert local == T0 and local.tzinfo is UTC
    s = Sample(ASSET, "melt_temp", T0 + timedelta(hours=1), 231.5, "degC", Quality.UNCERTAIN)
    assert decode_batch(encode_batch(Batch("a", "b", 0, (s,)))).samples[0] == s


def test_sample_rejects_naive_time_and_nan() -> None:
    with pytest.raises(ValueError, match="UTC"):
        Sample(ASSET, "x", datetime(2026, 1, 1), 1.0)
    with pytest.raises(ValueError, match="finite"):
        Sample(ASSET, "x", T0, float("nan"))


@pytest.mark.parametrize("name", ["x\n", "x\r\n", "\nx", "x\n\n"])
def test_names_with_line_breaks_are_invalid_everywhere(name: str) -> None:
    """Every name check (segment, signal, id, asset path) is a whole-string match."""
    from zhizao.model import AssetPath, valid_id, valid_segment, valid_signal

    assert not valid_segment(name) and not valid_signal(name) and not valid_id(name)
    with pytest.raises(ValueError):
        AssetPath.parse(f"p/a/l/{name}")
    with pytest.raises(ValueError):
        Sample(ASSET, name, T0, 1.0)


def test_decompress_reads_every_gzip_member_to_its_end_or_refuses() -> None:
    two = gzip.compress(b"first\n") + gzip.compress(b"second\n")
    assert decompress(two) == b"first\nsecond\n"
    with pytest.raises(WireFormatError, match="truncated"):
        decompress(two[:-3])
    with pytest.raises(WireFormatError, match="after the end of the gzip data"):
        decompress(gzip.compress(b"x") + b"\n")
    with pytest.raises(WireFormatError, match="inflates to more than"):  # the limit spans the members
        decompress(gzip.compress(b" " * 600) + gzip.compress(b" " * 600), max_bytes=1000)
    assert decompress(b"plain") == b"plain"
