"""Gzip bodies are read whole, or refused: every gzip member (RFC 1952: a gzip file is a series of
members; influxd, Go and Python read them all), each to its end. ingest used to read the first
member only — the line-protocol route stored the first member's lines and answered 204 for all,
and stored a body cut short as far as it inflated (a line that lost its timestamp was stored at the
server's time); the bulk route answered 200 for one batch of two. Real uvicorn on DuckDB (found by
review 47)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.testing import run_server, server_settings
from tests.ingest.helpers import batch, stored_count
from zhizao.wire import encode_batch

LP = {"content-type": "text/plain; charset=utf-8", "content-encoding": "gzip"}
NS = 1_795_420_800_000_000_000  # 2026-11-23T08:00:00Z in ns


def _line(machine: str, field: str) -> str:
    return f"telemetry,site=plant,area=a1,line=line1,machine={machine} {field} {NS}"


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[httpx.Client]:
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_line_protocol_in_two_gzip_members_is_stored_whole(duck: httpx.Client) -> None:
    body = gzip.compress((_line("cnc-1", "x=1") + "\n").encode()) + \
        gzip.compress((_line("cnc-2", "x=2") + "\n").encode())
    r = duck.post("/write", content=body, headers=LP)
    assert r.status_code == 204, r.text
    assert stored_count(duck) == 2, "the second gzip member's line was dropped"


def test_line_protocol_in_gzip_cut_short_is_refused_and_nothing_stored(duck: httpx.Client) -> None:
    good = _line("cnc-1", "x=1") + "\n" + _line("cnc-1", "y=123456.5") + "\n"
    gz = gzip.compress(good.encode())
    for cut in range(9, len(gz)):  # the shortest cut whose inflated text ends inside the last line
        out = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(gz[:-cut])
        if len(out) < len(good) - 12 and out.startswith(good[:len(good) // 2].encode()):
            break
    r = duck.post("/write", content=gz[:-cut], headers=LP)
    assert r.status_code == 400 and "truncated" in r.text, (r.status_code, r.text)
    assert stored_count(duck) == 0


def test_line_protocol_with_bytes_after_the_gzip_data_is_refused(duck: httpx.Client) -> None:
    body = gzip.compress((_line("cnc-1", "x=1") + "\n").encode()) + b"trailing"
    r = duck.post("/write", content=body, headers=LP)
    assert r.status_code == 400 and "after the end of the gzip data" in r.text, r.text
    assert stored_count(duck) == 0


def test_bulk_batches_in_several_gzip_members_are_each_answered(duck: httpx.Client) -> None:
    lines = [encode_batch(batch("m1", producer="agent-1")),
             encode_batch(batch("m2", producer="agent-2", signal="other"))]
    body = gzip.compress(lines[0] + b"\n") + gzip.compress(lines[1] + b"\n")
    r = duck.post("/api/v1/batches/bulk", content=body,
                  headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"})
    assert r.status_code == 200 and len(r.json()["batches"]) == 2, r.text
