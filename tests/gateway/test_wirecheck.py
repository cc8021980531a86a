"""The intake's fast batch check agrees with the reference decoder (``zhizao.wire``) on every case."""

from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from gateway.testing import simulated_batches
from gateway.wirecheck import BatchChecker
from zhizao import wire
from zhizao.errors import WireFormatError

GOOD = wire.batch_to_dict(simulated_batches(20, n_agents=1)["agent-0"][0])
Doc = dict[str, Any]


def _sample(i: int, **changes: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        for key, value in changes.items():
            if value is _DROP:
                del doc["samples"][i][key]
            else:
                doc["samples"][i][key] = value
    return change


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
