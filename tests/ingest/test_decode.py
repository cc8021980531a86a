"""The fast decoder agrees with ``zhizao.wire.decode_batch_lenient`` on every document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import Decoder
from ingest.storage.base import SampleFrame
from zhizao.errors import WireFormatError
from zhizao.wire import decode_batch_lenient

GOOD = {"asset": "plant/a1/line1/cnc-1", "signal": "power_kw", "ts": "2026-11-23T08:00:00.250000Z",
        "value": 1.5, "unit": "kW", "quality": "good"}
odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65), st.floats(allow_nan=True),
    st.text(max_size=5), st.just("x" * 1025), st.lists(st.integers(), max_size=2))
# the decoder reads the canonical form (YYYY-MM-DDTHH:MM:SS.ffffffZ) without fromisoformat: near
# misses of that form must be read — or refused — exactly as the reference does
canonical_ts = st.one_of(
    st.sampled_from([
        "2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:60.000000Z", "2026-02-30T08:00:00.000000Z",
        "2026-11-23T08:00:00.\u0663\u0660\u0660\u0660\u0660\u0660Z", "2026-11-23T08:00:00.25000Z",
        "2026-11-23T08:00:00.2500000Z", "2026-11-23T08:00:00,250000Z", "2026-11-23 08:00:00.250000Z",
        "2026-11-23T08:00:00.+50000Z", "2026-11-23T08:00:00.2_5000Z", "2026-11-23T08:00:00. 25000Z",
        "2026-11-23T24:00:00.000000Z", "0001-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z"]),
    st.builds(lambda d, f: f"2026-11-{d}T08:00:00.{f}Z",
              st.text(alphabet="0123456789-+ T\u0663", min_size=2, max_size=2),
              st.text(alphabet="0123456789_+- .\u0663", min_size=6, max_size=6)),
)
sample_fields = st.fixed_dictionaries({}, optional={
    "asset": st.sampled_from(["plant/a1/line1/cnc-1", "p/a/l", "p/a/l/m/x", "p/a/l/-m", 7, None, [1], {}]),
    "signal": st.sampled_from(["power_kw", "axis.x-load", "9bad", "", 1, ["x"], {"a": 1}]),
    "ts": st.one_of(st.sampled_from([
        "2026-11-23T08:00:00Z", "2026-11-23T09:00:00+01:00", "2026-11-23T08:00:00", "yesterday", 1700000000,
        "2026-11-23"]), canonical_ts),
    "value": odd_values,
    "unit": st.sampled_from([None, "kW", "x" * 33, 5]),
    "quality": st.sampled_from(["good", "bad", "uncertain", "BAD", None, 1]),
    "extra": st.just(1),
})
envelope = st.fixed_dictionaries({
    "format": st.sampled_from(["zhizao.batch", "zhizao.batch", "other"]),
    "version": st.sampled_from([1, 1, 1, 2, True, 1.0]),
    "producer": st.sampled_from(["agent-1", "agent-1", "bad id", ""]),
    "batch_id": st.sampled_from(["b-1", "b-1", "-b"]),
    "seq": st.sampled_from([0, 7, 7, -1, "7", True]),
    "samples": st.lists(st.one_of(st.just(GOOD), sample_fields, st.integers()), max_size=6),
})


def _check_runs(frame: SampleFrame) -> None:
    """A frame's run hint, when it has one, covers its samples in runs of one kind of point."""
    runs = frame.runs
    if runs is None:
        return
    assert sum(runs) == len(frame) and all(runs)
    kinds = list(zip(frame.asset, frame.signal, frame.vtype, frame.unit, frame.quality, strict=True))
    start = 0
    for n in runs:
        assert len(set(kinds[start:start + n])) == 1
        start += n


def _both(doc: Any) -> tuple[Any, Any]:
    data = json.dumps(doc).encode()
    try:
        fast = Decoder().decode(data, max_bytes=10**6)
        _check_runs(fast.frame)
        fast_out: Any = (fast.producer, fast.batch_id, fast.seq, fast.rejected, fast.frame, fast.total)
    except WireFormatError as exc:
        fast_out = ("error", exc.path, exc.message)
    try:
        batch, rejected = decode_batch_lenient(data, max_bytes=10**6)
        ref_out: Any = (batch.producer, batch.batch_id, batch.seq, rejected,
                        SampleFrame.from_samples(batch.samples), len(batch.samples) + len(rejected))
    except WireFormatError as exc:
        ref_out = ("error", exc.path, exc.message)
    return fast_out, ref_out


@settings(max_examples=300, deadline=None)
@given(envelope)
def test_fast_decoder_matches_reference(doc: dict[str, Any]) -> None:
    fast, ref = _both(doc)
    assert fast == ref


@pytest.mark.parametrize("value", [True, 0, 2**63 - 1, -(2**63), 1e308, "", "ok", 0.1])
def test_edge_values_take_the_fast_path_identically(value: object) -> None:
    doc = {"format": "zhizao.batch", "version": 1, "producer": "a", "batch_id": "b", "seq": 0,
           "samples": [{**GOOD, "value": value}]}
    fast, ref = _both(doc)
    assert fast == ref and fast[3] == {}


@settings(max_examples=300, deadline=None)
@given(st.lists(canonical_ts, min_size=1, max_size=4))
def test_timestamps_read_exactly_as_the_reference(stamps: list[str]) -> None:
    """One decoder across documents, so cached seconds are reused and must never leak a wrong value."""
    decoder = Decoder()
    for ts in [*stamps, *stamps]:
        doc = {"format": "zhizao.batch", "version": 1, "producer": "a", "batch_id": "b", "seq": 0,
               "samples": [{**GOOD, "ts": ts}, {**GOOD, "ts": "2026-11-23T08:00:00.000001Z"}]}
        data = json.dumps(doc).encode()
        fast = decoder.decode(data, max_bytes=10**6)
        batch, rejected = decode_batch_lenient(data, max_bytes=10**6)
        assert (fast.frame, fast.rejected) == (SampleFrame.from_samples(batch.samples), rejected), ts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["2026-11-23T08:00:00.000000Z", "2026-11-23T08:00:01.000000Z",
                                 "2026-11-23T09:00:01+01:00"]), min_size=17, max_size=40),
       canonical_ts, st.integers(min_value=0, max_value=39))
def test_shared_timestamps_and_one_odd_one_anywhere(stamps: list[str], odd: str, where: int) -> None:
    """Agents send several signals per tick (timestamps shared, read once each): an odd timestamp
    anywhere — also past the first 16 — is read or refused exactly as the reference does."""
    stamps = [*stamps]
    stamps[where % len(stamps)] = odd
    doc = {"format": "zhizao.batch", "version": 1, "producer": "a", "batch_id": "b", "seq": 0,
           "samples": [{**GOOD, "ts": ts, "value": float(i)} for i, ts in enumerate(stamps)]}
    fast, ref = _both(doc)
    assert fast == ref


@pytest.mark.parametrize("ts", ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_timestamp_outside_the_utc_years_is_a_rejected_sample(ts: str) -> None:
    """Valid ISO text whose instant falls outside years 1-9999 in UTC: the sample is rejected with
    a reason by both decoders (the reference used to raise OverflowError, the fast path to store it)."""
    doc = {"format": "zhizao.batch", "version": 1, "producer": "a", "batch_id": "b", "seq": 0,
           "samples": [GOOD, {**GOOD, "ts": ts}]}
    fast, ref = _both(doc)
    assert fast == ref
    assert list(fast[3]) == [1] and "outside the years 1-9999" in fast[3][1]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=48, max_value=120), canonical_ts, st.integers(min_value=0, max_value=119),
       st.lists(odd_values, min_size=1, max_size=8))
def test_large_batches_one_timestamp_each_match_the_reference(
        n: int, odd: str, where: int, values: list[object]) -> None:
    """A timestamp per sample in a large batch (read all at once by numpy) with one odd timestamp
    anywhere, and values of every JSON type cycling through it: read or refused as the reference."""
    stamps = [f"2026-11-23T08:{i // 60:02d}:{i % 60:02d}.{i * 7919 % 10**6:06d}Z" for i in range(n)]
    stamps[where % n] = odd
    doc = {"format": "zhizao.batch", "version": 1, "producer": "a", "batch_id": "b", "seq": 0,
           "samples": [{**GOOD, "ts": ts, "value": values[i % len(values)]} for i, ts in enumerate(stamps)]}
    fast, ref = _both(doc)
    assert fast == ref


# --- version 2: samples grouped into series ---------------------------------------------------

GOOD_SERIES = {"asset": "plant/a1/line1/cnc-1", "signal": "power_kw", "unit": "kW",
               "ts": ["2026-11-23T08:00:00.250000Z", "2026-11-23T08:00:01.250000Z"], "value": [1.5, 2.5]}
series_fields = st.fixed_dictionaries({}, optional={
    "asset": st.sampled_from(["plant/a1/line1/cnc-1", "p/a/l", "p/a/l/-m", 7, None, [1]]),
    "signal": st.sampled_from(["power_kw", "axis.x-load", "9bad", "", 1]),
    "unit": st.sampled_from([None, "kW", "x" * 33, 5]),
    "quality": st.sampled_from(["good", "bad", "uncertain", "BAD", None, 1]),
    "ts": st.one_of(st.lists(st.one_of(canonical_ts, st.sampled_from(["2026-11-23T09:00:00+01:00", "x", 5])),
                             max_size=4), st.just("2026-11-23T08:00:00.250000Z")),
    "value": st.one_of(st.lists(odd_values, max_size=4), st.just(1.5)),
    "extra": st.just(1),
})
paired_series = st.integers(min_value=0, max_value=5).flatmap(lambda n: st.fixed_dictionaries({
    "asset": st.sampled_from(["plant/a1/line1/cnc-1", "plant/a1/line1/cnc-2", "p/a/l"]),
    "signal": st.sampled_from(["power_kw", "state", "9bad"]),
    "ts": st.lists(canonical_ts, min_size=n, max_size=n),
    "value": st.lists(odd_values, min_size=n, max_size=n),
}, optional={"unit": st.sampled_from([None, "kW", "x" * 33]),
             "quality": st.sampled_from(["good", "bad", "BAD"])}))
envelope_v2 = st.fixed_dictionaries({
    "format": st.sampled_from(["zhizao.batch", "zhizao.batch", "other"]),
    "version": st.sampled_from([2, 2, 2, 1, True, 2.0]),
    "producer": st.sampled_from(["agent-1", "agent-1", "bad id"]),
    "batch_id": st.sampled_from(["b-1", "b-1", "-b"]),
    "seq": st.sampled_from([0, 7, -1]),
    "series": st.lists(st.one_of(st.just(GOOD_SERIES), paired_series, paired_series, series_fields,
                                 st.integers()), max_size=5),
})


@settings(max_examples=400, deadline=None)
@given(envelope_v2)
def test_fast_decoder_matches_reference_on_version_2(doc: dict[str, Any]) -> None:
    fast, ref = _both(doc)
    assert fast == ref


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.integers(min_value=1, max_value=40), canonical_ts,
       st.integers(min_value=0, max_value=10**6), st.lists(odd_values, min_size=1, max_size=6))
def test_large_version_2_batches_match_the_reference(
        n_series: int, per_series: int, odd: str, where: int, values: list[object]) -> None:
    """Many series of many samples (timestamps read all at once by numpy), one odd timestamp
    anywhere and values of every JSON type: the same frame, rejections and indices."""
    series: list[dict[str, Any]] = []
    for k in range(n_series):
        stamps = [f"2026-11-23T08:{i // 60:02d}:{i % 60:02d}.{(i + k) * 7919 % 10**6:06d}Z"
                  for i in range(per_series)]
        series.append({"asset": f"plant/a1/line1/m{k % 7}", "signal": f"s{k}", "ts": stamps,
                       "value": [values[(i + k) % len(values)] for i in range(per_series)]})
    k, i = divmod(where % (n_series * per_series), per_series)
    series[k]["ts"][i] = odd
    doc = {"format": "zhizao.batch", "version": 2, "producer": "a", "batch_id": "b", "seq": 0,
           "series": series}
    fast, ref = _both(doc)
    assert fast == ref


def test_version_2_reads_the_same_frame_as_version_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same samples sent in either version give the same frame (v2 groups them by series),
    both read by the fast path (the reference decoder is not called)."""
    import ingest.decode

    def no_reference(raw: bytes, max_bytes: int) -> None:
        raise AssertionError("fell back to the reference decoder")

    monkeypatch.setattr(ingest.decode, "_reference", no_reference)
    from zhizao.model import AssetPath, Batch, Sample
    from zhizao.wire import encode_batch, parse_ts
    samples = tuple(
        Sample(AssetPath("plant", "a1", "line1", f"m{m}"), signal,
               parse_ts(f"2026-11-23T08:00:{t:02d}.000000Z"), value, "kW" if signal == "power_kw" else None)
        for m in range(3) for signal, value in (("power_kw", 1.5), ("parts_total", 7), ("state", "running"))
        for t in range(20))
    batch = Batch("agent-1", "b-1", 0, samples)
    one = Decoder().decode(encode_batch(batch, version=1), max_bytes=10**6)
    two = Decoder().decode(encode_batch(batch, version=2), max_bytes=10**6)
    assert (one.rejected, two.rejected, one.total, two.total) == ({}, {}, 180, 180)
    assert one.frame == two.frame  # these samples are already grouped by series
    # version 2 knows its runs of one kind of point (9 series of 20 samples), version 1 does not
    assert (one.frame.kind_runs(), two.frame.kind_runs()) == (None, [20] * 9)
