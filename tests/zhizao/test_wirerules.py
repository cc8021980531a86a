"""The contract of ``zhizao.wirerules``: each predicate refuses a column exactly when the
reference decoder (``zhizao.wire``) refuses one of its items — on the edge cases of every rule,
one item at a time and mixed into columns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhizao import wire
from zhizao.model import INT_MAX, INT_MIN, MAX_STR_VALUE, MAX_UNIT, QUALITY_NAMES
from zhizao.wirerules import (
    VALUE_TYPES,
    KindCache,
    stamps_ok,
    uniform_values_ok,
    values_ok,
)

SCHEMA_DIR = Path(__file__).parents[2] / "zhizao/schema"
ASSET = "plant/a1/line1/cnc-1"
SIGNAL = "spindle_speed"
TS = "2026-11-23T08:00:00.250000Z"
GOOD: dict[str, Any] = {"asset": ASSET, "signal": SIGNAL, "ts": TS, "value": 1.5, "unit": "rpm",
                        "quality": "good"}


def reference_accepts(**fields: Any) -> bool:
    """Whether the reference decoder accepts the one sample ``GOOD`` with ``fields`` changed: the
    whole public decoder, in both versions, on the JSON document when JSON carries the sample
    unchanged (types included); else — a non-finite float, an integer orjson cannot write — the
    reference's own per-sample rule on the parsed sample."""
    sample = {**GOOD, **fields}
    doc = {"format": wire.FORMAT, "version": 1, "producer": "p", "batch_id": "b", "seq": 0,
           "samples": [sample]}
    try:
        data = orjson.dumps(doc)
    except orjson.JSONEncodeError:
        data = b""
    if not data or repr(orjson.loads(data)) != repr(doc):
        try:
            wire._decode_sample(sample, {})
        except wire._FieldError:
            return False
        return True
    verdicts = set()
    for version in wire.VERSIONS:
        if version == 2:
            entry = {k: v for k, v in sample.items() if k not in ("ts", "value")}
            entry |= {"ts": [sample["ts"]], "value": [sample["value"]]}
            data = orjson.dumps({**{k: v for k, v in doc.items() if k != "samples"}, "version": 2,
                                 "series": [entry]})
        batch, rejected = wire.decode_batch_lenient(data)
        assert len(batch.samples) + len(rejected) == 1
        verdicts.add(not rejected)
    assert len(verdicts) == 1, "the two versions disagree"
    return verdicts.pop()


# --------------------------------------------------------------------------------------------
# values

EDGE_VALUES: list[Any] = [
    0, 1, -1, INT_MIN, INT_MIN + 1, INT_MIN - 1, INT_MAX - 1, INT_MAX, INT_MAX + 1, 2**64 - 1,
    True, False,
    0.0, -0.0, 1.5, -1e308, 1.7976931348623157e308, 5e-324, math.nan, math.inf, -math.inf,
    "", "running", "x" * MAX_STR_VALUE, "x" * (MAX_STR_VALUE + 1), "é" * MAX_STR_VALUE,
    "é" * (MAX_STR_VALUE + 1),
    None, [1.0], {"v": 1}, (1,), b"x",
]
ACCEPTED_VALUES = [v for v in EDGE_VALUES if reference_accepts(value=v)]


def test_the_edges_fall_where_the_reference_puts_them() -> None:
    """The oracle itself, on the edges named by the rules (so a change of a rule shows here)."""
    accepted = {repr(v) for v in ACCEPTED_VALUES}
    for v in (INT_MIN, INT_MAX - 1, True, False, 0.0, 1.7976931348623157e308, "x" * MAX_STR_VALUE):
        assert repr(v) in accepted, v
    refused: tuple[Any, ...] = (INT_MIN - 1, INT_MAX, 2**64 - 1, math.nan, math.inf, -math.inf,
                                "x" * (MAX_STR_VALUE + 1), None, [1.0], {"v": 1})
    for v in refused:
        assert repr(v) not in accepted, v


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: repr(v)[:24])
def test_one_value(value: Any) -> None:
    expected = reference_accepts(value=value)
    assert values_ok([value]) is expected
    assert uniform_values_ok([value], type(value)) is expected
    assert uniform_values_ok([value] * 3, type(value)) is expected


@pytest.mark.parametrize("value", EDGE_VALUES, ids=lambda v: repr(v)[:24])
def test_one_value_among_valid_ones_of_every_type(value: Any) -> None:
    """The mixed path (several types in one column, each checked over its own rows)."""
    expected = reference_accepts(value=value)
    for others in ([1.5, 7, True, "on"], [7], [1.5], ["on"], [True], [2.5, "on"]):
        column = [*others, value, *others]
        assert values_ok(column) is expected, others
        if not (type(value) is float and not math.isfinite(value)):
            assert values_ok(column, finite_floats=True) is expected, others


def test_bool_is_not_an_int() -> None:
    """A boolean is always accepted; an integer beside it still has its range checked."""
    assert values_ok([True, False, 1, 0])
    assert not values_ok([True, INT_MAX])
    assert not values_ok([False, INT_MIN - 1])
    assert values_ok([True, INT_MAX - 1, INT_MIN])
    assert uniform_values_ok([True, False], bool)


def test_non_finite_floats_are_refused_as_check_value_refuses_them() -> None:
    """JSON cannot carry NaN or infinity, so the reference meets them only as parsed values; its
    rule for them is ``check_value``, which refuses them."""
    for v in (math.nan, math.inf, -math.inf):
        assert not reference_accepts(value=v)
        assert not values_ok([1.0, v, 2.0])
        assert not values_ok([1.0, v, 2, "on"])
        assert not uniform_values_ok([1.0, v], float)


def test_a_sum_of_floats_that_overflows_is_no_refusal() -> None:
    """``uniform_values_ok`` sums the floats first: an overflow of finite ones is not an infinity."""
    big = [1.7976931348623157e308] * 3
    assert math.isinf(sum(big))
    assert values_ok(big)
    assert uniform_values_ok(big, float)
    assert values_ok([*big, 1, "on"])
    assert not uniform_values_ok([*big, math.nan], float)


def test_empty_columns_hold_nothing_to_refuse() -> None:
    assert values_ok([])
    assert values_ok([], finite_floats=True)
    for kind in (*VALUE_TYPES, dict):
        assert uniform_values_ok([], kind)


@given(st.lists(st.sampled_from(EDGE_VALUES), max_size=12))
@settings(max_examples=300)
def test_any_column_of_edge_values(column: list[Any]) -> None:
    expected = all(repr(v) in {repr(a) for a in ACCEPTED_VALUES} for v in column)
    assert values_ok(column) is expected
    if not any(type(v) is float and not math.isfinite(v) for v in column):
        assert values_ok(column, finite_floats=True) is expected
    for kind in VALUE_TYPES:
        picked = [v for v in column if type(v) is kind]
        assert uniform_values_ok(picked, kind) is all(repr(v) in {repr(a) for a in ACCEPTED_VALUES}
                                                      for v in picked)


# --------------------------------------------------------------------------------------------
# timestamps

EDGE_STAMPS: list[Any] = [
    TS, "2026-11-23T08:00:00Z", "2026-11-23T09:00:00.5+01:00", "2026-11-23 08:00:00Z",
    "2026-11-23T08:00:00", "2026-11-23T08:00:00.250000", "not a time", "",
    "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59Z",
    "9999-12-31T23:30:00-01:00", 5, None, 1.5,
]


@pytest.mark.parametrize("stamp", EDGE_STAMPS, ids=repr)
def test_one_stamp(stamp: Any) -> None:
    expected = reference_accepts(ts=stamp)
    assert stamps_ok([stamp]) is expected
    assert stamps_ok({TS, stamp}) is expected


# --------------------------------------------------------------------------------------------
# asset, signal, unit, quality

EDGE_UNITS: list[Any] = [None, "", "kW", "u" * MAX_UNIT, "u" * (MAX_UNIT + 1), "é" * MAX_UNIT, 5, True, 1.5]
EDGE_QUALITIES: list[Any] = [*sorted(QUALITY_NAMES), "GOOD", "Good", "unknown", "", None, 1, True]
EDGE_ASSETS: list[Any] = [
    ASSET, "p/a/l/m", "/".join(["x" * 64] * 4), "/".join(["x" * 65, "a", "l", "m"]),
    "plant/a1/line1", "plant/a1/line1/cnc-1/x", "plant/a1/line1/cnc 1", "plant/a1//cnc-1",
    "plant/a1/line1/-cnc", "plant/a1/line1/cnc*", "", 5, None, True, 1.5,
]
EDGE_SIGNALS: list[Any] = [
    SIGNAL, "axis.x-load", "_x", "a" * 128, "a" * 129, "9bad", "", "a b", "a/b", 1, None, True,
]


@pytest.mark.parametrize("unit", EDGE_UNITS, ids=repr)
def test_one_unit(unit: Any) -> None:
    expected = reference_accepts(unit=unit)
    assert KindCache().accepts({ASSET}, {SIGNAL}, {unit}, {"good"}) is expected
    assert KindCache().accepts({ASSET}, {SIGNAL}, {None, "kW", unit}, {"good"}) is expected


def test_unit_edges() -> None:
    assert reference_accepts(unit="u" * MAX_UNIT)
    assert not reference_accepts(unit="u" * (MAX_UNIT + 1))
    assert reference_accepts(unit=None)


def test_the_unit_limit_is_the_schemas() -> None:
    v1 = json.loads((SCHEMA_DIR / "batch-v1.schema.json").read_text())
    v2 = json.loads((SCHEMA_DIR / "batch-v2.schema.json").read_text())
    assert v1["$defs"]["sample"]["properties"]["unit"]["maxLength"] == MAX_UNIT
    assert v2["$defs"]["series"]["properties"]["unit"]["maxLength"] == MAX_UNIT


@pytest.mark.parametrize("quality", EDGE_QUALITIES, ids=repr)
def test_one_quality(quality: Any) -> None:
    expected = reference_accepts(quality=quality)
    assert KindCache().accepts({ASSET}, {SIGNAL}, {None}, {quality}) is expected
    assert KindCache().accepts({ASSET}, {SIGNAL}, {None}, {"good", quality}) is expected
    assert KindCache().accepts({ASSET}, {SIGNAL}, {None}, ["good", quality, "bad"]) is expected


@pytest.mark.parametrize("asset", EDGE_ASSETS, ids=lambda a: repr(a)[:40])
def test_one_asset(asset: Any) -> None:
    expected = reference_accepts(asset=asset)
    kinds = KindCache()
    for _ in range(2):  # the second time from the cache when valid (a refused one is never cached)
        assert kinds.accepts({asset}, {SIGNAL}, {None}, {"good"}) is expected
        assert kinds.accepts({ASSET, asset}, {SIGNAL}, {None}, {"good"}) is expected


@pytest.mark.parametrize("signal", EDGE_SIGNALS, ids=lambda s: repr(s)[:40])
def test_one_signal(signal: Any) -> None:
    expected = reference_accepts(signal=signal)
    kinds = KindCache()
    for _ in range(2):
        assert kinds.accepts({ASSET}, {signal}, {None}, {"good"}) is expected
        assert kinds.accepts({ASSET}, {SIGNAL, signal}, {None}, {"good"}) is expected


def test_the_edges_of_kinds_fall_where_the_reference_puts_them() -> None:
    assert reference_accepts(asset="/".join(["x" * 64] * 4))
    assert not reference_accepts(asset="plant/a1/line1")
    assert not reference_accepts(asset=5)
    assert reference_accepts(signal="a" * 128)
    assert not reference_accepts(signal="a" * 129)
    assert not reference_accepts(signal="9bad")
    assert not reference_accepts(quality="unknown")
    assert not reference_accepts(quality=None)


def test_a_name_cached_as_one_kind_is_not_taken_as_the_other() -> None:
    kinds = KindCache()
    assert kinds.accepts({ASSET}, {SIGNAL}, {None}, {"good"})
    assert not reference_accepts(signal=ASSET) and not reference_accepts(asset=SIGNAL)
    assert not kinds.accepts({ASSET}, {ASSET}, {None}, {"good"})
    assert not kinds.accepts({SIGNAL}, {SIGNAL}, {None}, {"good"})


def test_a_cache_that_outgrows_its_bound_is_emptied_and_still_checks() -> None:
    kinds = KindCache(cache_size=2)
    assets = [f"p/a/l/m{i}" for i in range(6)]
    for i in range(len(assets)):
        assert kinds.accepts(set(assets[: i + 1]), {SIGNAL}, {None}, {"good"})
        assert len(kinds._assets) <= len(assets)
    assert kinds.accepts({assets[0]}, {SIGNAL}, {None}, {"good"})
    assert len(kinds._assets) == 1  # emptied at the start of that call, then refilled
    assert not kinds.accepts({"p/a/l"}, {SIGNAL}, {None}, {"good"})


@given(st.sets(st.sampled_from(EDGE_ASSETS), min_size=1, max_size=3),
       st.sets(st.sampled_from(EDGE_SIGNALS), min_size=1, max_size=3),
       st.sets(st.sampled_from(EDGE_UNITS), min_size=1, max_size=3),
       st.sets(st.sampled_from(EDGE_QUALITIES), min_size=1, max_size=3))
@settings(max_examples=200)
def test_any_mix_of_kinds(assets: set[Any], signals: set[Any], units: set[Any], qualities: set[Any]) -> None:
    expected = (all(reference_accepts(asset=a) for a in assets)
                and all(reference_accepts(signal=s) for s in signals)
                and all(reference_accepts(unit=u) for u in units)
                and all(reference_accepts(quality=q) for q in qualities))
    assert KindCache().accepts(assets, signals, units, qualities) is expected
