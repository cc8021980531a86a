"""The bulk → DuckDB write path's shortcuts agree with what they replace: NDJSON lines read as views
of the body (no copy) are the lines ``bytes.split`` + ``strip`` gave and decode exactly as copies
do; ``frame_to_arrow`` builds the table a plain per-column conversion builds; the dedup records
written from an Arrow table are the ones the ``VALUES`` insert wrote; the serving process's
garbage-collector set-up."""

from __future__ import annotations

import gc
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.cli import GC_THRESHOLD, tune_gc
from ingest.decode import Decoder, OutOfRange
from ingest.service import ndjson_lines
from ingest.storage.base import BatchKey, SampleFrame
from ingest.storage.duckdb.schema import DDL
from ingest.storage.duckdb.writer import ARROW_RECORDS, Writer, WriteRequest, frame_to_arrow
from ingest.testing import run_server, server_settings
from tests.ingest import helpers
from tests.ingest.helpers import stored_count
from tests.ingest.test_decode import envelope
from zhizao.errors import WireFormatError
from zhizao.wire import encode_batch

NDJSON = {"content-type": "application/x-ndjson"}


def _reference_lines(body: bytes) -> list[bytes]:
    """What the bulk route split a body into before views."""
    return [line for line in body.split(b"\n") if line.strip()]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"{}", b" ", b"\n", b"\r", b"\t", b"\x0b", b"\x0c", b"\x85", b"\xa0",
                                 b"\x00", b"\r\n", b"\n\n"]), max_size=24))
def test_lines_are_the_split_and_stripped_lines(parts: list[bytes]) -> None:
    body = b"".join(parts)
    lines = ndjson_lines(body)
    assert all(type(v) is memoryview for v in lines)
    assert [bytes(v) for v in lines] == _reference_lines(body)


@pytest.mark.parametrize("body", [b"", b"\n", b"x", b"x\n", b"\nx", b" \n \r\n\t", b"a\nb\n\nc",
                                  b" a \n\r\n b\r", b"\x0b\x0c\n\x85"])
def test_lines_edge_cases(body: bytes) -> None:
    assert [bytes(v) for v in ndjson_lines(body)] == _reference_lines(body)


def _outcome(decoder: Decoder, data: bytes | memoryview) -> Any:
    try:
        d = decoder.decode(data, max_bytes=10**6)
    except OutOfRange as exc:
        return ("out of range", exc.path, exc.message, exc.sample)
    except WireFormatError as exc:
        return ("error", type(exc).__name__, exc.path, exc.message)
    return (d.producer, d.batch_id, d.seq, d.rejected, d.frame, d.total)


def _as_line(data: bytes) -> memoryview:
    """``data`` as a bulk body's line: a view in the middle of a larger body."""
    body = b"{}\n" + data + b"\n{}"
    view = memoryview(body)[3:3 + len(data)]
    assert view.tobytes() == data
    return view


@settings(max_examples=300, deadline=None)
@given(envelope, st.sampled_from(["", " ", "\r", " \t"]), st.booleans())
def test_a_line_decodes_as_its_copy(doc: dict[str, Any], pad: str, compress: bool) -> None:
    """The fast decoder reads a view as it reads the bytes: documents of every kind (the reference's
    rejections and refusals included), padded as lines may be, gzip lines too."""
    data = (pad + json.dumps(doc) + pad).encode()
    if compress:
        data = gzip.compress(data)
    assert _outcome(Decoder(), _as_line(data)) == _outcome(Decoder(), data)


@pytest.mark.parametrize("text", [
    '{"format":"zhizao.batch","version":1,"producer":"a","batch_id":"b","seq":0,"samples":[{"asset":'
    '"p/a/l/m","signal":"s","ts":"2026-11-23T08:00:00Z","value":1e400}]}',
    '{"format":"zhizao.batch","version":2,"producer":"a","batch_id":"b","seq":0,"series":[{"asset":'
    '"p/a/l/m","signal":"s","ts":["2026-11-23T08:00:00Z","2026-11-23T08:00:01Z"],"value":[1,-1e999]}]}',
    "not json", "", "\x1f", "\x1f\x8b", "[]",
])
def test_odd_lines_decode_as_their_copies(text: str) -> None:
    data = text.encode()
    assert _outcome(Decoder(), _as_line(data)) == _outcome(Decoder(), data)


def _plain_arrow(frame: SampleFrame) -> pa.Table:
    """The conversion ``frame_to_arrow`` replaced: ``pa.array`` of every column as it is."""
    return pa.Table.from_arrays([
        pa.array(frame.ts_us, pa.timestamp("us")), pa.array(frame.asset, pa.string()),
        pa.array(frame.signal, pa.string()), pa.array(frame.vtype, pa.string()),
        pa.array(frame.value, pa.float64()), pa.array(frame.value_str, pa.string()),
        pa.array(frame.unit, pa.string()), pa.array(frame.quality, pa.string()),
    ], names=["ts", "asset", "signal", "vtype", "value", "value_str", "unit", "quality"])


_rows = st.tuples(
    st.integers(-62135596800_000000, 253402300799_999999),
    st.sampled_from(["p/a/l/m1", "p/a/l/m2", "p/a/l/é"]), st.sampled_from(["s", "t"]),
    st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53), st.booleans(),
              st.text(max_size=4)),
    st.sampled_from([None, "kW", "°C"]), st.sampled_from(["good", "good", "bad", "uncertain"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_rows, max_size=30))
def test_frame_to_arrow_is_the_plain_conversion(rows: list[Any]) -> None:
    frame = SampleFrame()
    for ts, asset, signal, value, unit, quality in rows:
        frame.append_raw(asset, signal, ts, value, unit=unit, quality=quality)
    table = frame_to_arrow(frame)
    assert table.equals(_plain_arrow(frame))
    assert table.to_pylist() == _plain_arrow(frame).to_pylist()


def test_frame_to_arrow_of_constant_and_empty_columns() -> None:
    n = 5
    frame = SampleFrame(asset=["p/a/l/m"] * n, signal=["s"] * n, ts_us=list(range(n)), vtype=["s"] * n,
                        value=[None] * n, value_str=["RUN", "RUN", "", "é", "RUN"], unit=[None] * n,
                        quality=["bad"] * n)
    assert frame_to_arrow(frame).equals(_plain_arrow(frame))
    assert frame_to_arrow(frame).column("quality").to_pylist() == ["bad"] * n
    assert frame_to_arrow(SampleFrame()).equals(_plain_arrow(SampleFrame()))


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for ddl in DDL:
        con.execute(ddl)
    w = Writer(con)
    w.open()
    try:
        yield w
    finally:
        con.close()


def _frame(n: int) -> SampleFrame:
    frame = SampleFrame()
    for i in range(n):
        frame.append_raw("p/a/l/m", "s", i, float(i), unit=None, quality="good")
    return frame


@pytest.mark.parametrize("more", [0, ARROW_RECORDS])
def test_dedup_records_of_a_group_commit(writer: Writer, more: int) -> None:
    """One group: new batches, a batch twice in the group, a batch stored before — the records
    are each new batch once with its count, and they deduplicate after a reload of the index;
    alike with few records (``INSERT ... VALUES``) and with many (an Arrow table)."""
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    writer.commit([WriteRequest(_frame(2), BatchKey("agent-1", "old"))])
    keys = [BatchKey("agent-1", "b-1"), BatchKey("agent-2", "b-1"), BatchKey("agent-1", "b-1"),
            BatchKey("agent-1", "old"), None, BatchKey("agent-é", "b-\u4e2d")]
    group = [WriteRequest(_frame(n), key) for n, key in zip([3, 4, 5, 6, 7, 1], keys, strict=True)]
    group += [WriteRequest(_frame(1), BatchKey("agent-9", f"m-{i:03d}")) for i in range(more)]
    results = writer.commit(group)
    assert [(r.accepted, r.duplicate) for r in results] == [
        (3, False), (4, False), (3, True), (2, True), (7, False), (1, False)] + [(1, False)] * more
    rows = writer.con.execute(
        "SELECT producer, batch_id, accepted, received FROM batches ORDER BY producer, batch_id").fetchall()
    assert [r[:3] for r in rows] == [("agent-1", "b-1", 3), ("agent-1", "old", 2), ("agent-2", "b-1", 4),
                                     *[("agent-9", f"m-{i:03d}", 1) for i in range(more)],
                                     ("agent-é", "b-\u4e2d", 1)]
    assert all(before <= r[3] <= datetime.now(UTC).replace(tzinfo=None) for r in rows)
    assert writer.con.execute("SELECT count(*) FROM samples").fetchone() == (2 + 3 + 4 + 7 + 1 + more,)
    writer.prune(timedelta(days=1), 1000)  # reloads the index from the table
    again = writer.commit([WriteRequest(_frame(9), BatchKey("agent-é", "b-\u4e2d")),
                           WriteRequest(_frame(9), BatchKey("agent-2", "b-1"))]
                          + [WriteRequest(_frame(9), BatchKey("agent-9", f"m-{i:03d}")) for i in range(more)])
    assert [(r.accepted, r.duplicate) for r in again] == [(1, True), (4, True)] + [(1, True)] * more


def test_a_commit_stores_every_column_in_its_place(writer: Writer) -> None:
    """Samples are inserted by position from the Arrow table: each value lands in its column."""
    frame = SampleFrame()
    frame.append_raw("p/a/l/m1", "state", 1_000_000, "RUN", unit=None, quality="uncertain")
    frame.append_raw("p/a/l/m2", "power_kw", 2_000_001, 2.5, unit="kW", quality="good")
    frame.append_raw("p/a/l/m2", "parts", 3_000_000, 7, unit="pcs", quality="bad")
    writer.commit([WriteRequest(frame, BatchKey("agent-1", "b-1"))])
    rows = writer.con.execute("SELECT epoch_us(ts), asset, signal, vtype, value, value_str, unit, quality "
                              "FROM samples ORDER BY ts").fetchall()
    assert rows == [(1_000_000, "p/a/l/m1", "state", "s", None, "RUN", None, "uncertain"),
                    (2_000_001, "p/a/l/m2", "power_kw", "f", 2.5, None, "kW", "good"),
                    (3_000_000, "p/a/l/m2", "parts", "i", 7.0, None, "pcs", "bad")]


def test_bulk_bodies_with_odd_line_ends_over_http(tmp_path: Path) -> None:
    """CRLF line ends, blank and whitespace-only lines, a padded line, a gzip body: each batch line is
    answered and stored once, as before lines were views."""
    s = server_settings(tmp_path)
    docs = [encode_batch(helpers.batch(f"b-{i}", 3, "agent-1", signal=f"sig_{i}")) for i in range(4)]
    body = b"\r\n".join([docs[0], b"", b"  \t", docs[1], b" " + docs[2] + b" \r", b"\r", docs[3]]) + b"\r\n"
    with run_server(s) as url, httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert [(x["batch_id"], x["accepted"], x["duplicate"]) for x in doc["batches"]] == [
            (f"b-{i}", 3, False) for i in range(4)]
        again = client.post("/api/v1/batches/bulk", content=gzip.compress(body),
                            headers={**NDJSON, "content-encoding": "gzip"})
        assert [x["duplicate"] for x in again.json()["batches"]] == [True] * 4
        assert stored_count(client) == 12


def test_a_bulk_line_that_is_gzip_is_read_as_before(tmp_path: Path) -> None:
    """A line starting with the gzip magic is inflated, as the single endpoint would (here: one with
    no newline byte in its compressed form, so that it survives as one line)."""
    s = server_settings(tmp_path)
    zipped = (gzip.compress(encode_batch(helpers.batch(f"z-{i}", 2, "agent-1")), mtime=0) for i in range(200))
    raw = next(z for z in zipped if b"\n" not in z)
    with run_server(s) as url, httpx.Client(base_url=url, timeout=10) as client:
        # not first: a body starting with the gzip magic is a gzip body
        r = client.post("/api/v1/batches/bulk", content=encode_batch(helpers.batch("plain", 2)) + b"\n" + raw,
                        headers=NDJSON)
        assert r.status_code == 200, r.text
        assert [(x["accepted"], x["error"]) for x in r.json()["batches"]] == [(2, None), (2, None)]


def test_tune_gc_freezes_and_raises_the_young_threshold() -> None:
    old = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*old)

