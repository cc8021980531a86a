"""Version 2 of the wire format (samples grouped into series): round trips, the published schema,
size, lenient rejections numbered in document order, strict errors naming series and position,
structural errors, fuzzing."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.zhizao.test_wire import batches, json_values, segments, signals, timestamps, values
from zhizao import AssetPath, Batch, Quality, Sample, WireFormatError
from zhizao.wire import decode_batch, decode_batch_lenient, encode_batch, group_by_series

SCHEMA_DIR = Path(__file__).parents[2] / "zhizao/schema"
SCHEMA_V1 = json.loads((SCHEMA_DIR / "batch-v1.schema.json").read_text())
SCHEMA_V2 = json.loads((SCHEMA_DIR / "batch-v2.schema.json").read_text())
T0 = datetime(2026, 11, 23, 8, 0, 0, 250000, tzinfo=UTC)

SeriesKey = tuple[str, str, str | None, Quality]


# --------------------------------------------------------------------------------------------
# helpers


def series_key(s: Sample) -> SeriesKey:
    return (str(s.asset), s.signal, s.unit, s.quality)


def grouped(samples: Sequence[Sample]) -> tuple[Sample, ...]:
    """``samples`` regrouped by series in order of first appearance (stable within a series):
    the order in which a version-2 document has one series per (asset, signal, unit, quality)."""
    first: dict[SeriesKey, int] = {}
    for s in samples:
        first.setdefault(series_key(s), len(first))
    return tuple(sorted(samples, key=lambda s: first[series_key(s)]))


def v2_doc(*series: object, **envelope: Any) -> dict[str, Any]:
    return {
        "format": "zhizao.batch",
        "version": 2,
        "producer": "agent-1",
        "batch_id": "b-1",
        "seq": 3,
        "series": list(series),
        **envelope,
    }


def a_series(n: int, **overrides: Any) -> dict[str, Any]:
    """A valid series of ``n`` samples, with ``overrides`` applied."""
    entry: dict[str, Any] = {
        "asset": "plant/a1/line1/cnc-1",
        "signal": "spindle_speed",
        "unit": "rpm",
        "ts": [f"2026-11-23T08:00:{i:02d}.250000Z" for i in range(n)],
        "value": [12000.0 + i for i in range(n)],
    }
    entry.update(overrides)
    return entry


def three_series() -> dict[str, Any]:
    """Series of 2, 3 and 2 samples: flat indices 0-1, 2-4 and 5-6."""
    return v2_doc(
        a_series(2),
        a_series(3, asset="plant/a1/line1/press-2", signal="force", unit="kN", quality="uncertain"),
        a_series(2, signal="axis.x.load", unit=None, value=[1, True]),
    )


def to_v1(doc: dict[str, Any]) -> dict[str, Any]:
    """The version-1 document carrying the same samples as the version-2 ``doc`` (which must be
    structurally valid), and for each flat index the (series, position) it came from."""
    samples: list[dict[str, Any]] = []
    for entry in doc["series"]:
        common = {k: entry[k] for k in ("asset", "signal", "unit", "quality") if k in entry}
        for ts, value in zip(entry["ts"], entry["value"], strict=True):
            samples.append({**common, "ts": ts, "value": value})
    out = {k: v for k, v in doc.items() if k != "series"}
    return {**out, "version": 1, "samples": samples}


def places(doc: dict[str, Any]) -> list[tuple[int, int]]:
    return [(k, j) for k, entry in enumerate(doc["series"]) for j in range(len(entry["ts"]))]


def dumps(doc: object) -> bytes:
    return orjson.dumps(doc)


def wire_error(decode: Callable[[bytes], object], data: bytes) -> WireFormatError:
    with pytest.raises(WireFormatError) as info:
        decode(data)
    return info.value


def strict_error(doc: dict[str, Any]) -> WireFormatError:
    return wire_error(decode_batch, dumps(doc))


# --------------------------------------------------------------------------------------------
# strategies

assets = st.builds(AssetPath, segments, segments, segments, segments)
units = st.one_of(st.none(), st.sampled_from(["degC", "bar", "kW", "kWh", "rpm", "mm/s", ""]))
qualities = st.sampled_from(list(Quality))
series_keys = st.tuples(assets, signals, units, qualities)
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}\Z")
seqs = st.integers(min_value=0, max_value=2**62)


@st.composite
def clustered_batches(draw: st.DrawFn) -> Batch:
    """Batches whose samples come from a few series, interleaved arbitrarily."""
    keys = draw(st.lists(series_keys, min_size=1, max_size=4))
    points = draw(st.lists(st.tuples(st.sampled_from(keys), timestamps, values), max_size=16))
    samples = tuple(
        Sample(AssetPath.parse(str(asset)), signal, ts, value, unit, quality)
        for (asset, signal, unit, quality), ts, value in points
    )
    return Batch(draw(ids), draw(ids), draw(seqs), samples)


@st.composite
def grouped_batches(draw: st.DrawFn) -> Batch:
    """Batches whose samples are already grouped by series, series in first-appearance order."""
    keys = draw(st.lists(series_keys, max_size=5, unique_by=lambda k: (str(k[0]), k[1], k[2], k[3])))
    samples: list[Sample] = []
    for asset, signal, unit, quality in keys:
        for ts, value in draw(st.lists(st.tuples(timestamps, values), min_size=1, max_size=5)):
            samples.append(Sample(asset, signal, ts, value, unit, quality))
    return Batch(draw(ids), draw(ids), draw(seqs), tuple(samples))


any_batches = st.one_of(batches, clustered_batches())


# --------------------------------------------------------------------------------------------
# 1. round trips


def runs(samples: Sequence[Sample]) -> int:
    """How many runs of consecutive samples of one series ``samples`` has."""
    return sum(1 for i, s in enumerate(samples) if i == 0 or series_key(samples[i - 1]) != series_key(s))


@given(any_batches, st.booleans())
@settings(max_examples=100)
def test_round_trip_keeps_envelope_samples_and_their_order(batch: Batch, compress: bool) -> None:
    decoded = decode_batch(encode_batch(batch, compress=compress, version=2))
    assert (decoded.producer, decoded.batch_id, decoded.seq) == (batch.producer, batch.batch_id, batch.seq)
    assert Counter(decoded.samples) == Counter(batch.samples)
    assert decoded == batch  # version 2 keeps the order: one series per run


@given(grouped_batches(), st.booleans())
@settings(max_examples=100)
def test_round_trip_is_exact_for_batches_grouped_by_series(batch: Batch, compress: bool) -> None:
    assert grouped(batch.samples) == batch.samples
    doc = orjson.loads(encode_batch(batch, version=2))
    assert len(doc["series"]) == len({series_key(s) for s in batch.samples})
    assert decode_batch(encode_batch(batch, compress=compress, version=2)) == batch


@given(any_batches)
@settings(max_examples=150)
def test_one_series_per_run_of_consecutive_samples(batch: Batch) -> None:
    doc = orjson.loads(encode_batch(batch, version=2))
    assert len(doc["series"]) == runs(batch.samples)
    assert all(doc["series"]), "no empty series"
    assert [len(e["ts"]) for e in doc["series"]] == [len(e["value"]) for e in doc["series"]]
    assert sum(len(e["ts"]) for e in doc["series"]) == len(batch.samples)
    for before, after in itertools.pairwise(doc["series"]):  # neighbours differ in their series
        key = ("asset", "signal", "unit", "quality")
        assert [before.get(k) for k in key] != [after.get(k) for k in key]


@given(any_batches)
@settings(max_examples=150)
def test_group_by_series_groups_in_first_appearance_order(batch: Batch) -> None:
    regrouped = group_by_series(batch.samples)
    assert regrouped == grouped(batch.samples)
    assert group_by_series(regrouped) == regrouped
    doc = orjson.loads(encode_batch(replace(batch, samples=regrouped), version=2))
    assert len(doc["series"]) == len({series_key(s) for s in batch.samples})
    assert decode_batch(encode_batch(replace(batch, samples=regrouped), version=2)).samples == regrouped


@given(any_batches)
@settings(max_examples=100)
def test_version_2_decodes_to_what_version_1_decodes_to(batch: Batch) -> None:
    v1 = decode_batch(encode_batch(batch, version=1))
    v2 = decode_batch(encode_batch(batch, version=2))
    assert v1 == v2 == batch


def _interleaved() -> tuple[Sample, ...]:
    a = AssetPath("plant", "a1", "line1", "cnc-1")
    b = AssetPath("plant", "a1", "line1", "press-2")
    return (
        Sample(a, "spindle_speed", T0, 12000.0, "rpm"),
        Sample(a, "spindle_speed", T0 + timedelta(seconds=1), 12010.0, "rpm"),
        Sample(b, "force", T0, 3.5, "kN", Quality.UNCERTAIN),
        Sample(a, "spindle_speed", T0 + timedelta(seconds=2), 12020.0, "rpm"),
        Sample(a, "spindle_speed", T0 + timedelta(seconds=3), 12030.0, "rpm", Quality.BAD),
        Sample(b, "force", T0 + timedelta(seconds=1), 3.25, "kN", Quality.UNCERTAIN),
        Sample(a, "spindle_speed", T0 + timedelta(seconds=4), 12040.0),
    )


CNC: Final = {"asset": "plant/a1/line1/cnc-1", "signal": "spindle_speed"}
PRESS: Final = {"asset": "plant/a1/line1/press-2", "signal": "force", "unit": "kN", "quality": "uncertain"}


def test_interleaved_series_become_one_series_per_run_in_order() -> None:
    s = _interleaved()
    batch = Batch("agent-7", "b-000042", 42, s)
    doc = orjson.loads(encode_batch(batch, version=2))
    assert doc == {
        "format": "zhizao.batch",
        "version": 2,
        "producer": "agent-7",
        "batch_id": "b-000042",
        "seq": 42,
        "series": [
            {
                **CNC,
                "unit": "rpm",
                "ts": ["2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:01.250000Z"],
                "value": [12000.0, 12010.0],
            },
            {**PRESS, "ts": ["2026-11-23T08:00:00.250000Z"], "value": [3.5]},
            {**CNC, "unit": "rpm", "ts": ["2026-11-23T08:00:02.250000Z"], "value": [12020.0]},
            {
                **CNC,
                "unit": "rpm",
                "quality": "bad",
                "ts": ["2026-11-23T08:00:03.250000Z"],
                "value": [12030.0],
            },
            {**PRESS, "ts": ["2026-11-23T08:00:01.250000Z"], "value": [3.25]},
            {**CNC, "ts": ["2026-11-23T08:00:04.250000Z"], "value": [12040.0]},
        ],
    }
    assert decode_batch(encode_batch(batch, version=2)) == batch


def test_grouped_interleaved_series_give_one_series_each() -> None:
    s = _interleaved()
    regrouped = group_by_series(s)
    assert regrouped == (s[0], s[1], s[3], s[2], s[5], s[4], s[6])
    batch = Batch("agent-7", "b-000042", 42, regrouped)
    doc = orjson.loads(encode_batch(batch, version=2))
    assert doc["series"] == [
        {
            **CNC,
            "unit": "rpm",
            "ts": [
                "2026-11-23T08:00:00.250000Z",
                "2026-11-23T08:00:01.250000Z",
                "2026-11-23T08:00:02.250000Z",
            ],
            "value": [12000.0, 12010.0, 12020.0],
        },
        {**PRESS, "ts": ["2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:01.250000Z"], "value": [3.5, 3.25]},
        {**CNC, "unit": "rpm", "quality": "bad", "ts": ["2026-11-23T08:00:03.250000Z"], "value": [12030.0]},
        {**CNC, "ts": ["2026-11-23T08:00:04.250000Z"], "value": [12040.0]},
    ]
    assert decode_batch(encode_batch(batch, version=2)) == batch


def test_rejection_index_is_the_index_in_the_encoded_batch() -> None:
    s = _interleaved()
    doc = orjson.loads(encode_batch(Batch("p", "b", 0, s), version=2))
    doc["series"][3]["ts"][0] = "late"  # s[4]
    doc["series"][4]["asset"] = "gone"  # s[5]
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert list(rejected) == [4, 5]
    assert batch.samples == s[:4] + s[6:]


def test_compressed_version_2_is_gzip_of_the_plain_document() -> None:
    batch = Batch("agent-7", "b-1", 1, (Sample(AssetPath("p", "a", "l", "m"), "x", T0, 1.0),))
    data = encode_batch(batch, compress=True, version=2)
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data) == encode_batch(batch, version=2)
    assert encode_batch(batch, compress=True, version=2) == data  # deterministic (mtime 0)
    assert decode_batch(data) == batch
    assert decode_batch_lenient(data) == (batch, {})


def test_default_version_is_still_1() -> None:
    batch = Batch("agent-7", "b-1", 1, (Sample(AssetPath("p", "a", "l", "m"), "x", T0, 1.0),))
    assert orjson.loads(encode_batch(batch))["version"] == 1
    assert encode_batch(batch) == encode_batch(batch, version=1)


def test_optional_unit_and_quality_take_their_defaults() -> None:
    doc = v2_doc(
        {"asset": "p/a/l/m", "signal": "x", "ts": ["2026-11-23T08:00:00Z"], "value": [1]},
        {
            "asset": "p/a/l/m",
            "signal": "x",
            "unit": None,
            "quality": "good",
            "ts": ["2026-11-23T09:00:00+01:00"],
            "value": ["on"],
        },
    )
    batch = decode_batch(dumps(doc))
    asset = AssetPath("p", "a", "l", "m")
    assert batch.samples == (
        Sample(asset, "x", datetime(2026, 11, 23, 8, tzinfo=UTC), 1, None, Quality.GOOD),
        Sample(asset, "x", datetime(2026, 11, 23, 8, tzinfo=UTC), "on", None, Quality.GOOD),
    )


# --------------------------------------------------------------------------------------------
# 2. the published schemas


def test_schemas_are_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA_V1)
    jsonschema.Draft202012Validator.check_schema(SCHEMA_V2)


@given(any_batches)
@settings(max_examples=150)
def test_encoded_documents_match_their_published_schema(batch: Batch) -> None:
    v1 = orjson.loads(encode_batch(batch, version=1))
    v2 = orjson.loads(encode_batch(batch, version=2))
    jsonschema.validate(v2, SCHEMA_V2, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(v1, SCHEMA_V1, cls=jsonschema.Draft202012Validator)
    assert not jsonschema.Draft202012Validator(SCHEMA_V1).is_valid(v2)
    assert not jsonschema.Draft202012Validator(SCHEMA_V2).is_valid(v1)


def test_empty_batch_matches_the_schema() -> None:
    doc = orjson.loads(encode_batch(Batch("p", "b", 0), version=2))
    assert doc["series"] == []
    jsonschema.validate(doc, SCHEMA_V2, cls=jsonschema.Draft202012Validator)


# --------------------------------------------------------------------------------------------
# 3. size


def test_version_2_is_much_smaller_for_many_samples_in_few_series() -> None:
    machines = [AssetPath("plant", "a1", f"line{i % 3}", f"cnc-{i}") for i in range(10)]
    kinds = [
        ("spindle_speed", "rpm"),
        ("melt_temp", "degC"),
        ("power", "kW"),
        ("pressure", "bar"),
        ("vibration", "mm/s"),
        ("energy", "kWh"),
    ]
    keys = [(m, sig, unit) for m in machines for sig, unit in kinds]
    assert len(keys) == 60
    # 1000 readings as a scanner takes them (all 60 series each cycle), grouped by series the
    # way the agent's buffer sends them
    scans = tuple(
        Sample(m, sig, T0 + timedelta(milliseconds=250 * (i // 60)), round(1000 + i * 0.37, 2), unit)
        for i, (m, sig, unit) in ((i, keys[i % 60]) for i in range(1000))
    )
    samples = group_by_series(scans)
    batch = Batch("agent-7", "b-000042", 42, samples)
    v1, v2 = encode_batch(batch, version=1), encode_batch(batch, version=2)
    assert len(orjson.loads(v2)["series"]) == 60
    assert len(v2) < 0.6 * len(v1), (len(v2), len(v1))
    assert decode_batch(v2) == decode_batch(v1) == batch
    # compressed, version 2 is still the smaller
    assert len(encode_batch(batch, version=2, compress=True)) < len(
        encode_batch(batch, version=1, compress=True)
    )


# --------------------------------------------------------------------------------------------
# 4. lenient decoding: rejections numbered in document order, series after series

SERIES_FIELD_FAULTS: list[tuple[str, object, str]] = [
    ("asset", "plant/line1/cnc-1", "4 levels"),
    ("asset", "plant/a1/line 1/cnc-1", "line"),
    ("asset", 42, "must be a string"),
    ("signal", "9lives", "invalid signal"),
    ("signal", None, "invalid signal"),
    ("unit", "u" * 33, "at most 32"),
    ("unit", 5, "at most 32"),
    ("quality", "BAD", "good, uncertain, bad"),
    ("quality", None, "good, uncertain, bad"),
]


@pytest.mark.parametrize(("field", "bad", "words"), SERIES_FIELD_FAULTS)
def test_bad_series_field_rejects_every_sample_of_that_series(field: str, bad: object, words: str) -> None:
    doc = three_series()
    good = decode_batch(dumps(doc)).samples
    doc["series"][1][field] = bad
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert list(rejected) == [2, 3, 4]
    for reason in rejected.values():
        assert reason.startswith(f"{field}: ")
        assert words in reason
    assert len(set(rejected.values())) == 1
    assert batch.samples == good[:2] + good[5:]
    assert (batch.producer, batch.batch_id, batch.seq) == ("agent-1", "b-1", 3)


def test_unit_of_exactly_32_characters_is_fine() -> None:
    doc = three_series()
    doc["series"][1]["unit"] = "u" * 32
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert rejected == {}
    assert [s.unit for s in batch.samples[2:5]] == ["u" * 32] * 3


SAMPLE_FAULTS: list[tuple[str, object, str]] = [
    ("ts", "2026-11-23T08:00:00", "no UTC offset"),
    ("ts", "yesterday", ""),
    ("ts", 1700000000, "RFC 3339"),
    ("ts", None, "RFC 3339"),
    ("ts", "0001-01-01T00:00:00+01:00", "outside the years"),
    ("value", None, "number, boolean or string"),
    ("value", [1, 2], "number, boolean or string"),
    ("value", {"a": 1}, "number, boolean or string"),
    ("value", "v" * 1025, "longer than 1024"),
    ("value", 2**63, "64-bit"),
    ("value", 2**64 - 1, "64-bit"),
]


@pytest.mark.parametrize(("field", "bad", "words"), SAMPLE_FAULTS)
@pytest.mark.parametrize(("k", "j", "flat"), [(0, 0, 0), (1, 1, 3), (1, 2, 4), (2, 1, 6)])
def test_bad_timestamp_or_value_rejects_only_its_sample(
    field: str, bad: object, words: str, k: int, j: int, flat: int
) -> None:
    doc = three_series()
    good = decode_batch(dumps(doc)).samples
    doc["series"][k][field][j] = bad
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert list(rejected) == [flat]
    assert rejected[flat].startswith(f"{field}: ")
    assert words in rejected[flat]
    assert batch.samples == good[:flat] + good[flat + 1 :]


def test_non_finite_numbers_are_not_json_so_the_whole_document_is_refused() -> None:
    # orjson (like RFC 8259) has no NaN or Infinity, and refuses 1e999 rather than reading inf.
    text = dumps(three_series()).replace(b"12001.0", b"1e999")
    assert b"1e999" in text
    for decode in (decode_batch, decode_batch_lenient):
        err = wire_error(decode, text)
        assert err.path == ""
        assert "not valid JSON" in err.message
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        err = wire_error(decode_batch_lenient, dumps(three_series()).replace(b"12001.0", literal))
        assert "not valid JSON" in err.message


def test_rejections_are_listed_in_document_order_series_after_series() -> None:
    doc = three_series()
    doc["series"][2]["value"][0] = None  # flat 5
    doc["series"][0]["asset"] = "nope"  # flat 0, 1
    doc["series"][1]["ts"][2] = "2026-11-23T08:00:00"  # flat 4
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert list(rejected) == [0, 1, 4, 5]
    assert [r.split(":")[0] for r in rejected.values()] == ["asset", "asset", "ts", "value"]
    assert [s.signal for s in batch.samples] == ["force", "force", "axis.x.load"]
    assert [s.value for s in batch.samples] == [12000.0, 12001.0, True]


def test_lenient_indices_match_those_of_the_equivalent_version_1_document() -> None:
    doc = three_series()
    doc["series"][1]["quality"] = "great"
    doc["series"][2]["ts"][1] = 7
    doc["series"][0]["value"][1] = "v" * 2000
    assert decode_batch_lenient(dumps(doc)) == decode_batch_lenient(dumps(to_v1(doc)))


def test_first_error_of_a_sample_wins_over_its_series_unit_and_quality() -> None:
    # A sample is checked asset, signal, ts, value, unit, quality - as in version 1.
    doc = three_series()
    doc["series"][1]["unit"] = "u" * 40
    doc["series"][1]["ts"][0] = "never"
    _, rejected = decode_batch_lenient(dumps(doc))
    assert [r.split(":")[0] for r in rejected.values()] == ["ts", "unit", "unit"]
    assert strict_error(doc).path == "series[1].ts[0]"


# --------------------------------------------------------------------------------------------
# 5. strict errors name series and position, with the messages version 1 gives


@pytest.mark.parametrize(("field", "bad", "words"), SERIES_FIELD_FAULTS)
def test_strict_series_field_error_names_the_series(field: str, bad: object, words: str) -> None:
    doc = three_series()
    doc["series"][1][field] = bad
    err = strict_error(doc)
    assert err.path == f"series[1].{field}"
    assert words in err.message
    v1 = strict_error(to_v1(doc))
    assert v1.path == f"samples[2].{field}"
    assert err.message == v1.message


@pytest.mark.parametrize(("field", "bad", "words"), SAMPLE_FAULTS)
@pytest.mark.parametrize(("k", "j", "flat"), [(0, 0, 0), (1, 1, 3), (2, 1, 6)])
def test_strict_sample_error_names_series_and_position(
    field: str, bad: object, words: str, k: int, j: int, flat: int
) -> None:
    doc = three_series()
    doc["series"][k][field][j] = bad
    err = strict_error(doc)
    assert err.path == f"series[{k}].{field}[{j}]"
    assert words in err.message
    v1 = strict_error(to_v1(doc))
    assert v1.path == f"samples[{flat}].{field}"
    assert err.message == v1.message
    assert str(err) == f"{err.path}: {err.message}"


def test_strict_decoding_reports_the_first_bad_sample_in_document_order() -> None:
    doc = three_series()
    doc["series"][2]["asset"] = "x"
    doc["series"][1]["value"][2] = None
    assert strict_error(doc).path == "series[1].value[2]"


def _field_value(field: str, good: bool, index: int) -> object:
    options: dict[str, tuple[list[object], list[object]]] = {
        "asset": (["plant/a1/line1/cnc-1", "p/a/l/m"], ["p/a/l", 3, None, "p/a/l/m m"]),
        "signal": (["x", "axis.x.load"], ["9x", "", 1.5]),
        "unit": ([None, "kW", "u" * 32], ["u" * 33, 7, ["kW"]]),
        "quality": (["good", "bad", "uncertain"], ["Good", None, 0]),
        "ts": (["2026-11-23T08:00:00Z", "2026-11-23T09:00:00.5+01:00"], ["2026-11-23", 0, None, "x"]),
        "value": ([1.5, -3, True, "on", 2**63 - 1], [None, [], {}, 2**63, "s" * 1025]),
    }
    pool = options[field][0 if good else 1]
    return pool[index % len(pool)]


series_faults = st.fixed_dictionaries(
    {
        "asset": st.tuples(st.booleans(), st.integers(0, 9)),
        "signal": st.tuples(st.booleans(), st.integers(0, 9)),
        "unit": st.one_of(st.none(), st.tuples(st.booleans(), st.integers(0, 9))),
        "quality": st.one_of(st.none(), st.tuples(st.booleans(), st.integers(0, 9))),
        "points": st.lists(
            st.tuples(st.booleans(), st.integers(0, 9), st.booleans(), st.integers(0, 9)), max_size=4
        ),
    }
)


@given(st.lists(series_faults, max_size=5))
@settings(max_examples=300)
def test_version_2_reports_exactly_what_version_1_reports(specs: list[dict[str, Any]]) -> None:
    """Random mixtures of good and bad fields: version 2 keeps and rejects the same samples as
    the equivalent version-1 document, with the same indices and reasons; strictly, it raises
    the same message at the corresponding place."""
    series: list[dict[str, Any]] = []
    for spec in specs:
        entry: dict[str, Any] = {}
        for field in ("asset", "signal", "unit", "quality"):
            if spec[field] is not None:
                entry[field] = _field_value(field, *spec[field])
        entry["ts"] = [_field_value("ts", g, i) for g, i, _, _ in spec["points"]]
        entry["value"] = [_field_value("value", g, i) for _, _, g, i in spec["points"]]
        series.append(entry)
    doc = v2_doc(*series)
    v1_doc = to_v1(doc)
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert (batch, rejected) == decode_batch_lenient(dumps(v1_doc))
    assert list(rejected) == sorted(rejected)
    assert len(batch.samples) + len(rejected) == len(v1_doc["samples"])
    if not rejected:
        assert decode_batch(dumps(doc)) == batch
        return
    err, v1_err = strict_error(doc), strict_error(v1_doc)
    first = min(rejected)
    assert v1_err.path.startswith(f"samples[{first}].")
    field = v1_err.path.split(".", 1)[1]
    k, j = places(doc)[first]
    assert err.path == (f"series[{k}].{field}[{j}]" if field in ("ts", "value") else f"series[{k}].{field}")
    assert err.message == v1_err.message
    assert rejected[first] == f"{field}: {err.message}"


# --------------------------------------------------------------------------------------------
# 6. structural errors refuse the whole document, strict or lenient


def _set(k: int, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["series"][k][key] = value

    return change


def _drop(k: int, key: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        del doc["series"][k][key]

    return change


def _envelope(**fields: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc.update(fields)

    return change


def _replace_series(k: int, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["series"][k] = value

    return change


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        del doc[key]

    return change


STRUCTURAL: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("series object", _envelope(series={}), "series", "must be an array, got object"),
    ("series string", _envelope(series="abc"), "series", "must be an array, got string"),
    ("series null", _envelope(series=None), "series", "must be an array, got null"),
    ("series number", _envelope(series=3), "series", "must be an array, got number"),
    ("entry number", _replace_series(1, 5), "series[1]", "must be a JSON object, got number"),
    ("entry array", _replace_series(2, []), "series[2]", "must be a JSON object, got array"),
    ("entry null", _replace_series(0, None), "series[0]", "must be a JSON object, got null"),
    ("entry string", _replace_series(1, "s"), "series[1]", "must be a JSON object, got string"),
    ("unknown key", _set(1, "colour", "red"), "series[1].colour", "unknown field"),
    ("typo key", _set(2, "tss", []), "series[2].tss", "unknown field"),
    ("samples key in series", _set(0, "samples", []), "series[0].samples", "unknown field"),
    ("missing asset", _drop(1, "asset"), "series[1].asset", "required field is missing"),
    ("missing signal", _drop(1, "signal"), "series[1].signal", "required field is missing"),
    ("missing ts", _drop(2, "ts"), "series[2].ts", "required field is missing"),
    ("missing value", _drop(0, "value"), "series[0].value", "required field is missing"),
    ("ts string", _set(1, "ts", "2026-11-23T08:00:00Z"), "series[1].ts", "must be an array, got string"),
    ("ts null", _set(1, "ts", None), "series[1].ts", "must be an array, got null"),
    ("ts object", _set(1, "ts", {}), "series[1].ts", "must be an array, got object"),
    ("value number", _set(2, "value", 1.5), "series[2].value", "must be an array, got number"),
    ("value object", _set(2, "value", {"0": 1}), "series[2].value", "must be an array, got object"),
    ("value boolean", _set(0, "value", True), "series[0].value", "must be an array, got boolean"),
    ("value longer", _set(1, "value", [1, 2, 3, 4]), "series[1].value", "pair up"),
    ("value shorter", _set(1, "value", [1]), "series[1].value", "pair up"),
    ("ts empty", _set(0, "ts", []), "series[0].value", "pair up"),
    ("samples key in v2", _envelope(samples=[]), "samples", "unknown field"),
    ("unknown envelope key", _envelope(extra=1), "extra", "unknown field"),
    ("series missing", _without("series"), "series", "required field is missing"),
    ("version 3", _envelope(version=3, samples=[]), "version", "1 and 2"),
]


@pytest.mark.parametrize(
    ("change", "path", "words"), [c[1:] for c in STRUCTURAL], ids=[c[0] for c in STRUCTURAL]
)
@pytest.mark.parametrize("decode", [decode_batch, decode_batch_lenient], ids=["strict", "lenient"])
def test_structural_errors_refuse_the_whole_document(
    decode: Callable[[bytes], object], change: Callable[[dict[str, Any]], None], path: str, words: str
) -> None:
    doc = three_series()
    if path == "version":
        doc = {k: v for k, v in doc.items() if k != "series"}
    change(doc)
    err = wire_error(decode, dumps(doc))
    assert err.path == path
    assert words in err.message


def test_value_length_mismatch_message_gives_both_lengths() -> None:
    doc = three_series()
    doc["series"][1]["value"] = [1, 2, 3, 4, 5]
    assert strict_error(doc).message == "has 5 entries but ts has 3; they must pair up"


@pytest.mark.parametrize("decode", [decode_batch, decode_batch_lenient], ids=["strict", "lenient"])
def test_structural_error_in_a_later_series_wins_over_a_bad_sample_before_it(
    decode: Callable[[bytes], object],
) -> None:
    doc = three_series()
    doc["series"][0]["ts"][0] = "not a time"
    doc["series"][0]["asset"] = "bad"
    doc["series"][2]["ts"] = doc["series"][2]["ts"][:1]
    err = wire_error(decode, dumps(doc))
    assert err.path == "series[2].value"


def test_unknown_key_is_reported_before_missing_ones() -> None:
    doc = v2_doc({"colour": "red"})
    assert strict_error(doc).path == "series[0].colour"
    doc = v2_doc({"ts": [], "value": []})
    assert strict_error(doc).path == "series[0].asset"
    doc = v2_doc({"asset": "p/a/l/m", "value": 1})
    assert strict_error(doc).path == "series[0].signal"


def test_version_1_document_with_series_is_refused() -> None:
    doc = to_v1(three_series())
    doc["series"] = []
    for decode in (decode_batch, decode_batch_lenient):
        err = wire_error(decode, dumps(doc))
        assert (err.path, err.message) == ("series", "unknown field")


def test_version_2_document_with_samples_instead_of_series_is_refused() -> None:
    doc = to_v1(three_series())
    doc["version"] = 2
    for decode in (decode_batch, decode_batch_lenient):
        err = wire_error(decode, dumps(doc))
        assert (err.path, err.message) == ("samples", "unknown field")


@pytest.mark.parametrize("version", [3, 0, -1, "2", True, None, 99])
@pytest.mark.parametrize("decode", [decode_batch, decode_batch_lenient], ids=["strict", "lenient"])
def test_unknown_version_names_the_versions_spoken(
    decode: Callable[[bytes], object], version: object
) -> None:
    doc = to_v1(three_series())
    doc["version"] = version
    err = wire_error(decode, dumps(doc))
    assert err.path == "version"
    assert re.search(r"\b1\b.*\b2\b", err.message), err.message
    assert repr(version) in err.message


def test_unknown_version_with_series_names_the_version() -> None:
    doc = three_series()
    doc["version"] = 3
    err = strict_error(doc)
    assert err.path == "version"
    assert "1 and 2" in err.message


def test_other_envelope_errors_of_version_2() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"format": "zhizao.other"}, "format"),
        ({"producer": ""}, "producer"),
        ({"producer": 7}, "producer"),
        ({"batch_id": "has space"}, "batch_id"),
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 1.5}, "seq"),
    ]
    for change, path in cases:
        for decode in (decode_batch, decode_batch_lenient):
            assert wire_error(decode, dumps({**three_series(), **change})).path == path


# --------------------------------------------------------------------------------------------
# 7. empty series


def test_empty_series_contribute_no_samples_and_no_indices() -> None:
    empty = a_series(0)
    assert empty["ts"] == [] and empty["value"] == []
    full = three_series()
    doc = v2_doc(
        empty,
        full["series"][0],
        dict(empty),
        full["series"][1],
        a_series(0, unit=None),
        full["series"][2],
        empty,
    )
    assert decode_batch(dumps(doc)) == decode_batch(dumps(full))
    doc["series"][3]["ts"][1] = "bad"  # second sample of the 3-sample series: flat index 3
    batch, rejected = decode_batch_lenient(dumps(doc))
    assert list(rejected) == [3]
    assert len(batch.samples) == 6


def test_empty_series_array_gives_an_empty_batch() -> None:
    for decode_result in (decode_batch(dumps(v2_doc())), decode_batch_lenient(dumps(v2_doc()))[0]):
        assert decode_result == Batch("agent-1", "b-1", 3, ())
    assert decode_batch_lenient(dumps(v2_doc())) == (Batch("agent-1", "b-1", 3, ()), {})
    assert decode_batch(encode_batch(Batch("p", "b", 0), version=2, compress=True)) == Batch("p", "b", 0)


# --------------------------------------------------------------------------------------------
# 8. fuzzing: decoding raises nothing but WireFormatError


def _decodes_or_wire_error(data: bytes) -> None:
    strict: Batch | None = None
    with contextlib.suppress(WireFormatError):
        strict = decode_batch(data)
    lenient: tuple[Batch, dict[int, str]] | None = None
    with contextlib.suppress(WireFormatError):
        lenient = decode_batch_lenient(data)
    if strict is not None:
        assert lenient == (strict, {})
    if lenient is not None and not lenient[1]:
        assert strict == lenient[0]
    if lenient is not None:
        assert all(isinstance(i, int) and i >= 0 for i in lenient[1])
        assert list(lenient[1]) == sorted(lenient[1])


@given(st.binary(max_size=300), st.booleans())
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_wire_format_error(data: bytes, compress: bool) -> None:
    _decodes_or_wire_error(gzip.compress(data, mtime=0) if compress else data)


def _envelopes(doc: object) -> list[object]:
    good = a_series(2)
    out: list[object] = [
        v2_doc(series=doc),
        v2_doc(doc),
        v2_doc(good, doc),
        {**v2_doc(), "samples": [doc]},
        {**v2_doc(a_series(1)), "version": doc},
        {**v2_doc(a_series(1)), "seq": doc},
    ]
    for key in ("asset", "signal", "unit", "quality", "ts", "value"):
        out.append(v2_doc({**good, key: doc}))
        out.append(v2_doc({**good, key: [doc]} if key in ("ts", "value") else good))
    out.append(v2_doc({**good, "ts": [doc, doc], "value": [doc, doc]}))
    if isinstance(doc, dict):
        out.append(v2_doc({**good, **doc}))
        out.append(v2_doc({**doc, **good}))
        out.append({**v2_doc(good), **doc})
    return out


@given(json_values)
@settings(max_examples=500)
def test_arbitrary_json_in_version_2_envelopes_raises_only_wire_format_error(doc: object) -> None:
    for candidate in _envelopes(doc):
        _decodes_or_wire_error(json.dumps(candidate).encode())


@given(any_batches, st.data())
@settings(max_examples=150)
def test_corrupted_version_2_documents_raise_only_wire_format_error(
    batch: Batch, data: st.DataObject
) -> None:
    doc = orjson.loads(encode_batch(batch, version=2))
    if doc["series"]:
        k = data.draw(st.integers(0, len(doc["series"]) - 1))
        key = data.draw(st.sampled_from(["asset", "signal", "unit", "quality", "ts", "value", "other"]))
        doc["series"][k][key] = data.draw(json_values)
    raw = json.dumps(doc).encode()  # json_values holds integers orjson cannot write
    cut = data.draw(st.integers(0, len(raw)))
    _decodes_or_wire_error(raw)
    _decodes_or_wire_error(raw[:cut])


# --------------------------------------------------------------------------------------------
# 9. encoding an unknown version


@pytest.mark.parametrize("version", [3, 0, -1, 99])
def test_encoding_an_unknown_version_raises_value_error(version: int) -> None:
    batch = Batch("p", "b", 0, (Sample(AssetPath("p", "a", "l", "m"), "x", T0, 1.0),))
    with pytest.raises(ValueError, match="unknown wire-format version"):
        encode_batch(batch, version=version)
    with pytest.raises(ValueError, match="unknown wire-format version"):
        encode_batch(batch, version=version, compress=True)
