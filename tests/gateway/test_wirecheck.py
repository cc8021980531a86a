"""The intake's fast batch check agrees with the reference decoder (``zhizao.wire``) on every case,
for both versions of the wire format."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.testing import simulated_batches
from gateway.wirecheck import BatchChecker
from tests.zhizao.test_wire_v2 import any_batches
from zhizao import wire
from zhizao.errors import WireFormatError
from zhizao.model import Batch

GOOD = wire.batch_to_dict(simulated_batches(20, n_agents=1)["agent-0"][0])
Doc = dict[str, Any]


def _entry(array: str, i: int, changes: dict[str, Any]) -> Callable[[Doc], None]:
    """Set (or, with ``_DROP``, delete) keys of entry ``i`` of the document's ``array``."""
    def change(doc: Doc) -> None:
        for key, value in changes.items():
            if value is _DROP:
                del doc[array][i][key]
            else:
                doc[array][i][key] = value
    return change


def _sample(i: int, **changes: Any) -> Callable[[Doc], None]:
    return _entry("samples", i, changes)


def _env(**changes: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        for key, value in changes.items():
            if value is _DROP:
                del doc[key]
            else:
                doc[key] = value
    return change


_DROP = object()
CASES: dict[str, Callable[[Doc], object]] = {
    "valid": lambda d: None,
    "version 1.0": _env(version=1.0),
    "version true": _env(version=True),
    "version 2": _env(version=2),
    "format": _env(format="other"),
    "extra envelope key": _env(extra=1),
    "missing seq": _env(seq=_DROP),
    "seq negative": _env(seq=-1),
    "seq bool": _env(seq=True),
    "producer invalid": _env(producer="agent 1"),
    "producer trailing newline": _env(producer="agent-1\n"),
    "batch_id number": _env(batch_id=7),
    "samples not a list": _env(samples={}),
    "samples empty": _env(samples=[]),
    "sample a string": lambda d: d["samples"].__setitem__(1, "asset"),
    "sample a list": lambda d: d["samples"].__setitem__(1, ["asset", "signal", "ts", "value"]),
    "sample extra key": _sample(2, colour="red"),
    "missing asset": _sample(0, asset=_DROP),
    "missing value": _sample(3, value=_DROP),
    "asset 3 levels": _sample(0, asset="plant/a1/line1"),
    "asset a list": _sample(0, asset=["plant", "a1", "l", "m"]),
    "asset bad segment": _sample(4, asset="plant/a 1/line1/m"),
    "signal invalid": _sample(1, signal="9lives"),
    "signal a number": _sample(1, signal=9),
    "ts naive": _sample(0, ts="2026-11-23T08:00:00"),
    "ts junk": _sample(5, ts="yesterday"),
    "ts a number": _sample(5, ts=1700000000),
    "ts offset": _sample(5, ts="2026-11-23T08:00:00+08:00"),
    "ts year 1 east": _sample(5, ts="0001-01-01T00:00:00+01:00"),
    "value null": _sample(0, value=None),
    "value list": _sample(0, value=[1]),
    "value dict": _sample(0, value={"a": 1}),
    "value bool": _sample(0, value=False),
    "value int max": _sample(0, value=2**63 - 1),
    "value int over": _sample(0, value=2**63),
    "value int min": _sample(0, value=-(2**63)),
    "value long string": _sample(0, value="x" * 1025),
    "value string": _sample(0, value="x" * 1024),
    "unit too long": _sample(1, unit="u" * 33),
    "unit a number": _sample(1, unit=5),
    "unit null": _sample(1, unit=None),
    "unit missing": _sample(1, unit=_DROP),
    "quality bad": _sample(2, quality="bad"),
    "quality unknown": _sample(2, quality="terrible"),
    "quality a list": _sample(2, quality=["good"]),
    "quality null": _sample(2, quality=None),
    # unhashable fields, samples that are not objects, columns present in some samples only
    "unit a list": _sample(1, unit=["rpm"]),
    "signal a list": _sample(1, signal=["spindle_speed"]),
    "ts a list": _sample(5, ts=["2026-11-23T08:00:00Z"]),
    "sample a number": lambda d: d["samples"].__setitem__(1, 7),
    "sample null": lambda d: d["samples"].__setitem__(1, None),
    "no sample has a unit": lambda d: [s.pop("unit", None) for s in d["samples"]],
    "every sample has a quality": lambda d: [s.__setitem__("quality", "uncertain") for s in d["samples"]],
    "two bad samples": lambda d: (_sample(1, ts="x")(d), _sample(7, value=None)(d)),
    "all bad": lambda d: [s.__setitem__("value", None) for s in d["samples"]],
}


def _payloads(name: str) -> list[bytes]:
    doc = copy.deepcopy(GOOD)
    CASES[name](doc)
    raw = orjson.dumps(doc)
    return [raw, gzip.compress(raw), orjson.dumps(doc, option=orjson.OPT_INDENT_2)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_fast_check_agrees_with_the_reference_decoder(name: str) -> None:
    checker = BatchChecker()
    for payload in _payloads(name):
        try:
            ref, ref_rejected = wire.decode_batch_lenient(payload)
        except WireFormatError:
            with pytest.raises(WireFormatError):
                checker.check(payload)
            continue
        got = checker.check(payload)
        assert (got.producer, got.batch_id, got.rejected) == (ref.producer, ref.batch_id, ref_rejected)
        if not ref.samples:
            assert got.record is None
            continue
        assert got.record is not None and b"\n" not in (got.record.document or b"\n")
        assert (got.record.seq, len(got.record)) == (ref.seq, len(ref))
        assert got.record.decode() == ref, "the stored document holds exactly the valid samples"


def test_valid_documents_are_stored_as_received() -> None:
    checker = BatchChecker()
    raw = orjson.dumps(GOOD)
    got = checker.check(gzip.compress(raw))
    assert got.record is not None and got.record.document == raw and (checker.fast, checker.slow) == (1, 0)


# --- version 2: samples grouped into series ------------------------------------------------------
#
# The same differential check for version-2 documents: the fast path (now reading v2 itself) and
# the reference decoder agree on the accept/reject sets, the reasons (and an invalid envelope's
# error, path and message), and the stored record — which keeps the document's version, holds
# exactly the valid samples in their order, and is the same for every copy of the batch.

GOOD_BATCH = simulated_batches(20, n_agents=1)["agent-0"][0]
GOOD_V2 = wire.batch_to_dict_v2(Batch(GOOD_BATCH.producer, GOOD_BATCH.batch_id, GOOD_BATCH.seq,
                                      wire.group_by_series(GOOD_BATCH.samples)))
"""16 series: the first 10 of 10 float samples each, then 6 of one (strings and integers)."""


def _series(k: int, **changes: Any) -> Callable[[Doc], None]:
    return _entry("series", k, changes)


def _at(k: int, j: int, **changes: Any) -> Callable[[Doc], None]:
    """Set ``ts`` and/or ``value`` of sample ``j`` of series ``k``."""
    def change(doc: Doc) -> None:
        for key, value in changes.items():
            doc["series"][k][key][j] = value
    return change


def _insert(k: int, entry: Doc) -> Callable[[Doc], None]:
    return lambda d: d["series"].insert(k, copy.deepcopy(entry))


def _split_first(doc: Doc) -> None:
    """Series 0 as two consecutive entries of the same series (valid: one run each)."""
    first = doc["series"][0]
    tail = {**first, "ts": first["ts"][4:], "value": first["value"][4:]}
    first["ts"], first["value"] = first["ts"][:4], first["value"][:4]
    doc["series"].insert(1, tail)


EMPTY = {"asset": "plant/a1/line1/cnc-1", "signal": "spindle_speed", "ts": [], "value": []}
CASES_V2: dict[str, Callable[[Doc], object]] = {
    "valid": lambda d: None,
    # envelope
    "version 1": _env(version=1),
    "version 2.0": _env(version=2.0),
    "version true": _env(version=True),
    "version 3": _env(version=3),
    "format": _env(format="other"),
    "extra envelope key": _env(extra=1),
    "samples and series": _env(samples=[]),
    "missing seq": _env(seq=_DROP),
    "seq negative": _env(seq=-1),
    "seq bool": _env(seq=True),
    "producer invalid": _env(producer="agent 1"),
    "batch_id number": _env(batch_id=7),
    "series not a list": _env(series={}),
    "series empty": _env(series=[]),
    "series all empty": lambda d: [s.update(ts=[], value=[]) for s in d["series"]],
    # a series' structure
    "series a string": lambda d: d["series"].__setitem__(1, "asset"),
    "series a list": lambda d: d["series"].__setitem__(1, ["asset", "signal", "ts", "value"]),
    "series null": lambda d: d["series"].__setitem__(1, None),
    "series extra key": _series(2, colour="red"),
    "series missing asset": _series(0, asset=_DROP),
    "series missing signal": _series(3, signal=_DROP),
    "series missing ts": _series(1, ts=_DROP),
    "series missing value": _series(1, value=_DROP),
    "ts not an array": _series(0, ts="2026-11-23T08:00:00.250000Z"),
    "value not an array": _series(0, value=1.5),
    "ts longer than value": lambda d: d["series"][4]["ts"].append("2026-11-23T08:00:00.250000Z"),
    "value longer than ts": lambda d: d["series"][4]["value"].append(1.0),
    "empty series": _insert(3, EMPTY),
    "empty series with bad fields": _insert(3, {**EMPTY, "asset": "x", "signal": 9, "unit": 5,
                                                "quality": "terrible"}),
    "empty series missing signal": _insert(3, {"asset": "x", "ts": [], "value": []}),
    "empty series extra key": _insert(3, {**EMPTY, "colour": "red"}),
    "same series twice in a row": _split_first,
    # a series' fields: every sample of the series is rejected
    "asset 3 levels": _series(0, asset="plant/a1/line1"),
    "asset a list": _series(1, asset=["plant", "a1", "l", "m"]),
    "asset bad segment": _series(4, asset="plant/a 1/line1/m"),
    "asset a number": _series(12, asset=7),
    "asset null": _series(12, asset=None),
    "signal invalid": _series(1, signal="9lives"),
    "signal a number": _series(1, signal=9),
    "signal a dict": _series(1, signal={"a": 1}),
    "unit too long": _series(1, unit="u" * 33),
    "unit a number": _series(1, unit=5),
    "unit a list": _series(1, unit=["rpm"]),
    "unit null": _series(1, unit=None),
    "unit missing": _series(1, unit=_DROP),
    "unit 32 characters": _series(1, unit="u" * 32),
    "quality bad": _series(2, quality="bad"),
    "quality uncertain": _series(2, quality="uncertain"),
    "quality unknown": _series(2, quality="terrible"),
    "quality null": _series(2, quality=None),
    "quality a list": _series(2, quality=["good"]),
    # one sample's timestamp or value: that sample only
    "ts naive": _at(1, 3, ts="2026-11-23T08:00:00"),
    "ts junk": _at(5, 9, ts="yesterday"),
    "ts a number": _at(5, 0, ts=1700000000),
    "ts null": _at(5, 0, ts=None),
    "ts a list": _at(5, 0, ts=["2026-11-23T08:00:00.250000Z"]),
    "ts offset": _at(5, 1, ts="2026-11-23T08:00:00+08:00"),
    "ts year 1 east": _at(5, 1, ts="0001-01-01T00:00:00+01:00"),
    "value null": _at(0, 0, value=None),
    "value list": _at(0, 5, value=[1]),
    "value dict": _at(0, 5, value={"a": 1}),
    "value bool": _at(0, 5, value=False),
    "value int max": _at(0, 5, value=2**63 - 1),
    "value int over": _at(0, 5, value=2**63),
    "value int min": _at(0, 5, value=-(2**63)),
    "value long string": _at(12, 0, value="x" * 1025),
    "value string": _at(12, 0, value="x" * 1024),
    "bad sample of a one-sample series": _at(15, 0, ts="yesterday"),
    "two bad samples": lambda d: (_at(1, 2, ts="x")(d), _at(7, 9, value=None)(d)),
    "bad series and bad sample": lambda d: (_series(3, signal="9")(d), _at(8, 0, value=[])(d)),
    "all bad": lambda d: [s.__setitem__("value", [None] * len(s["value"])) for s in d["series"]],
}
FAST_V2 = {"valid", "empty series", "empty series with bad fields", "same series twice in a row",
           "unit null", "unit missing", "unit 32 characters", "quality bad", "quality uncertain",
           "ts offset", "value bool", "value int max", "value int min", "value string"}
"""The valid documents the fast path must take itself (the others are decided by the reference)."""


def _payloads_v2(name: str) -> list[bytes]:
    doc = copy.deepcopy(GOOD_V2)
    CASES_V2[name](doc)
    raw = orjson.dumps(doc)
    return [raw, gzip.compress(raw), orjson.dumps(doc, option=orjson.OPT_INDENT_2)]


Outcome = tuple[Any, ...]


def _reference(payload: bytes) -> Outcome:
    """What the reference decoder makes of ``payload``: its error, or the batch's identity, the
    rejections and the valid samples (and the seq when a sample is left)."""
    try:
        batch, rejected = wire.decode_batch_lenient(payload)
    except WireFormatError as exc:
        return ("error", exc.path, exc.message)
    return (batch.producer, batch.batch_id, rejected, batch.seq if batch.samples else None, batch.samples)


def _checked(checker: BatchChecker, payload: bytes) -> Outcome:
    """The same for the gateway's check, read back from the record it stores."""
    try:
        got = checker.check(payload)
    except WireFormatError as exc:
        return ("error", exc.path, exc.message)
    if got.record is None:
        return (got.producer, got.batch_id, got.rejected, None, ())
    record = got.record
    assert record.document is not None and b"\n" not in record.document
    assert (record.producer, record.batch_id) == (got.producer, got.batch_id)
    decoded = record.decode()
    assert len(record) == len(decoded) and decoded.seq == record.seq
    return (got.producer, got.batch_id, got.rejected, record.seq, decoded.samples)


def _version(payload: bytes) -> Any:
    return orjson.loads(wire.decompress(payload)).get("version")


@pytest.mark.parametrize("name", sorted(CASES_V2))
def test_the_fast_check_agrees_with_the_reference_decoder_on_version_2(name: str) -> None:
    checker = BatchChecker()
    documents: set[bytes] = set()
    for payload in _payloads_v2(name):
        ref = _reference(payload)
        assert _checked(checker, payload) == ref
        if ref[0] == "error" or not ref[4]:
            continue
        got = checker.check(payload)
        assert got.record is not None and got.record.document is not None
        documents.add(got.record.document)
        assert orjson.loads(got.record.document)["version"] == 2, "a v2 batch is stored as a v2 record"
    assert len(documents) <= 1, "every copy of a batch (gzip, another layout) becomes the same record"
    if name in FAST_V2:
        assert (checker.fast, checker.fast_v2, checker.slow) == (6, 6, 0), "taken by the fast path"


def test_the_v1_cases_keep_version_1_records() -> None:
    """A v1 batch is stored as v1 on both paths; a v2 batch as v2 on both (the slow path
    re-encodes the valid samples in the document's version, in their order)."""
    for cases, payloads, version in ((CASES, _payloads, 1), (CASES_V2, _payloads_v2, 2)):
        for name in cases:
            for payload in payloads(name):
                try:
                    got = BatchChecker().check(payload)
                except WireFormatError:
                    continue
                if got.record is not None:
                    assert got.record.document is not None
                    assert orjson.loads(got.record.document)["version"] == version, name


def test_a_valid_v2_document_is_stored_as_received() -> None:
    checker = BatchChecker()
    raw = orjson.dumps(GOOD_V2)
    got = checker.check(gzip.compress(raw))
    assert got.record is not None and got.record.document == raw
    assert (got.record.seq, len(got.record)) == (GOOD_BATCH.seq, len(GOOD_BATCH))
    assert (checker.fast, checker.fast_v2, checker.slow) == (1, 1, 0)
    indented = orjson.dumps(GOOD_V2, option=orjson.OPT_INDENT_2)
    again = checker.check(indented)
    assert again.record is not None and again.record.document == raw, "one line: re-serialised"


def test_a_partly_invalid_v2_batch_keeps_its_valid_samples_as_v2_in_their_order() -> None:
    doc = copy.deepcopy(GOOD_V2)
    _at(1, 2, ts="yesterday")(doc)
    _series(11, signal="9lives")(doc)
    payload = orjson.dumps(doc)
    ref, rejected = wire.decode_batch_lenient(payload)
    got = BatchChecker().check(payload)
    assert got.rejected == rejected and sorted(rejected) == [12, 101]
    assert rejected[12].startswith("ts:") and rejected[101].startswith("signal:")
    assert got.record is not None and got.record.document is not None
    stored = orjson.loads(got.record.document)
    assert stored["version"] == 2 and (stored["producer"], stored["batch_id"], stored["seq"]) == (
        GOOD_BATCH.producer, GOOD_BATCH.batch_id, GOOD_BATCH.seq)
    assert len(stored["series"]) == len(GOOD_V2["series"]) - 1, "series 11 had one sample: gone"
    every = wire.decode_batch(orjson.dumps(GOOD_V2)).samples
    assert got.record.decode() == ref == Batch(GOOD_BATCH.producer, GOOD_BATCH.batch_id, GOOD_BATCH.seq,
                                               tuple(s for i, s in enumerate(every) if i not in (12, 101)))
    # the same batch again — republished, gzip, another checker (another gateway): the same record
    for again in (payload, gzip.compress(payload)):
        for checker in (BatchChecker(), BatchChecker()):
            copy_ = checker.check(again)
            assert copy_.record is not None and copy_.record.document == got.record.document


def test_a_body_compressed_twice_is_refused_as_by_the_reference() -> None:
    for doc in (GOOD, GOOD_V2):
        twice = gzip.compress(gzip.compress(orjson.dumps(doc)))
        with pytest.raises(WireFormatError) as ref:
            wire.decode_batch_lenient(twice)
        with pytest.raises(WireFormatError) as got:
            BatchChecker().check(twice)
        assert (got.value.path, got.value.message) == (ref.value.path, ref.value.message)


# --- hypothesis: documents of both versions, valid and not -----------------------------------------

_stamps = st.sampled_from([
    "2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:01.000000Z",
    "2026-11-23T09:00:00+01:00", "2026-11-23T08:00:00", "yesterday", "2026-02-30T08:00:00.000000Z",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999Z", 5, None, ["x"]])
_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63) - 1, max_value=2**63), st.sampled_from([-(2**63), 2**63 - 1]),
    st.booleans(), st.text(max_size=3), st.just("x" * 1024), st.just("x" * 1025), st.none(),
    st.lists(st.integers(), max_size=1), st.just({"a": 1}))
_assets = st.sampled_from(["plant/a1/line1/cnc-1", "plant/a1/line1/cnc-1", "plant/a1/line1/cnc-2",
                           "p/a/l", "p/a/l/-m", 7, None, [1]])
_signals = st.sampled_from(["power_kw", "power_kw", "axis.x-load", "9bad", "", 1, ["x"]])
_units = st.sampled_from([None, "kW", "kW", "x" * 32, "x" * 33, 5, ["kW"]])
_qualities = st.sampled_from(["good", "bad", "uncertain", "BAD", None, 1, ["good"]])
_paired_series = st.integers(min_value=0, max_value=6).flatmap(lambda n: st.fixed_dictionaries({
    "asset": _assets, "signal": _signals,
    "ts": st.lists(_stamps, min_size=n, max_size=n), "value": st.lists(_values, min_size=n, max_size=n),
}, optional={"unit": _units, "quality": _qualities}))
_odd_series = st.fixed_dictionaries({}, optional={
    "asset": _assets, "signal": _signals, "unit": _units, "quality": _qualities,
    "ts": st.one_of(st.lists(_stamps, max_size=3), _stamps), "value": st.one_of(st.lists(_values, max_size=3),
                                                                                  _values),
    "extra": st.just(1)})
_samples = st.fixed_dictionaries({"asset": _assets, "signal": _signals, "ts": _stamps, "value": _values},
                                 optional={"unit": _units, "quality": _qualities, "extra": st.just(1)})
_envelope = {
    "format": st.sampled_from(["zhizao.batch", "zhizao.batch", "zhizao.batch", "other"]),
    "producer": st.sampled_from(["agent-1", "agent-1", "agent-1", "bad id"]),
    "batch_id": st.sampled_from(["b-1", "b-1", "b-1", "-b"]),
    "seq": st.sampled_from([0, 7, 7, -1, True, "7"]),
}
_docs_v2 = st.fixed_dictionaries({
    **_envelope, "version": st.sampled_from([2, 2, 2, 2, 1, 2.0, True]),
    "series": st.lists(st.one_of(_paired_series, _paired_series, _paired_series, _odd_series, st.integers()),
                       max_size=5)})
_docs_v1 = st.fixed_dictionaries({
    **_envelope, "version": st.sampled_from([1, 1, 1, 2, 1.0]),
    "samples": st.lists(st.one_of(_samples, _samples, st.integers()), max_size=6)})
_FIELDS: dict[str, st.SearchStrategy[Any]] = {"asset": _assets, "signal": _signals, "unit": _units,
                                             "quality": _qualities}


@st.composite
def _near_valid_v2(draw: st.DrawFn) -> Doc:
    """A valid v2 document (an encoded batch) with 0-2 fields of a series or of one sample
    changed: the documents at the fast path's border."""
    batch = draw(any_batches.filter(lambda b: len(b.samples) > 0))
    doc = wire.batch_to_dict_v2(batch)
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        entry = draw(st.sampled_from(doc["series"]))
        field = draw(st.sampled_from(["asset", "signal", "unit", "quality", "ts", "value"]))
        if field in ("ts", "value"):
            j = draw(st.integers(min_value=0, max_value=len(entry[field]) - 1))
            entry[field][j] = draw(_stamps if field == "ts" else _values)
        else:
            entry[field] = draw(_FIELDS[field])
    return doc


_SHARED = BatchChecker()  # across examples: its caches must never let an invalid value through


@settings(max_examples=500, deadline=None)
@given(st.one_of(_docs_v2, _near_valid_v2(), _near_valid_v2(), _docs_v1), st.booleans())
def test_fuzzed_documents_of_both_versions_agree_with_the_reference(doc: Doc, compress: bool) -> None:
    raw = json.dumps(doc).encode()  # json, not orjson: integers beyond 64 bits are written too
    payload = gzip.compress(raw) if compress else raw
    ref = _reference(payload)
    assert _checked(_SHARED, payload) == ref
    if ref[0] != "error" and ref[4]:
        got = _SHARED.check(payload)
        assert got.record is not None and got.record.document is not None
        assert orjson.loads(got.record.document)["version"] == (2 if doc["version"] == 2 else 1)


@settings(max_examples=200, deadline=None)
@given(any_batches, st.sampled_from([1, 2]), st.booleans())
def test_every_valid_encoded_batch_takes_the_fast_path(batch: Batch, version: int, compress: bool) -> None:
    payload = wire.encode_batch(batch, compress=compress, version=version)
    checker = BatchChecker()
    got = checker.check(payload)
    if not batch.samples:  # nothing to store: decided by the reference
        assert got.record is None and checker.slow == 1
        return
    assert (checker.fast, checker.fast_v2) == (1, int(version == 2))
    assert got.record is not None and got.record.document == wire.encode_batch(batch, version=version)
    assert got.record.decode() == batch
