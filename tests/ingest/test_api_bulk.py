"""The bulk write endpoint (NDJSON of wire-format batches) over a real uvicorn server, on DuckDB
and on a real influxd: per-line dedup, per-line errors, whole-request limits, auth first."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from ingest.auth import Scope
from ingest.settings import InfluxSettings, Settings
from ingest.testing import create_token, run_server, server_settings
from tests.ingest import helpers
from tests.ingest.helpers import assert_problem, stored_count
from zhizao.model import Batch
from zhizao.wire import batch_to_dict, encode_batch

NDJSON = {"content-type": "application/x-ndjson"}


def batch(batch_id: str = "b-1", n: int = 10, producer: str = "agent-1") -> Batch:
    """A batch whose points differ from every other batch id's (InfluxDB overwrites equal points)."""
    return helpers.batch(batch_id, n, producer, signal="sig_" + batch_id.replace("-", "_"))


def ndjson(*docs: Batch | bytes) -> bytes:
    return b"\n".join(d if isinstance(d, bytes) else encode_batch(d) for d in docs) + b"\n"


@pytest.fixture(params=["duckdb", "influxdb"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    s = server_settings(tmp_path, backend=request.param)
    if request.param == "influxdb":
        server = request.getfixturevalue("influxdb")
        s.storage.influxdb = InfluxSettings(url=server.url, database=server.database)
    s.limits.max_samples_per_batch = 500
    s.limits.max_bulk_batches = 5
    s.limits.max_bulk_samples = 1000
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        yield c


def test_bulk_stores_each_batch_once_and_answers_per_line(client: httpx.Client) -> None:
    body = ndjson(batch("b-1"), batch("b-2", producer="agent-2"))
    first = client.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
    assert first.status_code == 200, first.text
    doc = first.json()
    assert doc["accepted"] == 20 and doc["duplicates"] == 0 and doc["errors"] == 0
    assert [(x["line"], x["producer"], x["batch_id"], x["duplicate"]) for x in doc["batches"]] == [
        (0, "agent-1", "b-1", False), (1, "agent-2", "b-2", False)]
    # a resend (gzip this time) with one new batch and one repeated inside the same request
    body = gzip.compress(ndjson(batch("b-1"), batch("b-3"), batch("b-3")))
    again = client.post("/api/v1/batches/bulk", content=body, headers={**NDJSON, "content-encoding": "gzip"})
    assert again.status_code == 200, again.text
    doc = again.json()
    assert [x["duplicate"] for x in doc["batches"]] == [True, False, True]
    assert [x["accepted"] for x in doc["batches"]] == [10, 10, 10]
    assert doc["accepted"] == 10 and doc["duplicates"] == 2
    assert stored_count(client) == 30
    # the single endpoint sees the same dedup records
    single = client.post("/api/v1/batches", content=encode_batch(batch("b-3")))
    assert single.json()["duplicate"] is True


def test_a_bad_line_is_answered_alone_and_the_others_are_stored(client: httpx.Client) -> None:
    bad_sample = batch_to_dict(batch("b-5", n=3))
    bad_sample["samples"][1]["ts"] = "yesterday"
    body = ndjson(batch("b-4"), b'{"format": "zhizao.batch"}', orjson.dumps(bad_sample), b"{not json",
                  batch("b-6", n=501))
    r = client.post("/api/v1/batches/bulk", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    lines = r.json()["batches"]
    assert lines[0]["accepted"] == 10 and lines[0]["error"] is None
    assert lines[1]["error"]["status"] == 400 and "required field is missing" in lines[1]["error"]["detail"]
    assert lines[2]["accepted"] == 2 and [x["index"] for x in lines[2]["rejected"]] == [1]
    assert lines[3]["error"]["status"] == 400 and "not valid JSON" in lines[3]["error"]["detail"]
    assert lines[4]["error"]["status"] == 413 and "limit is 500" in lines[4]["error"]["detail"]
    assert r.json()["errors"] == 3 and r.json()["accepted"] == 12
    assert stored_count(client) == 12


def test_whole_request_limits_store_nothing(client: httpx.Client) -> None:
    six = ndjson(*(batch(f"b-{i}") for i in range(6)))
    assert_problem(client.post("/api/v1/batches/bulk", content=six, headers=NDJSON), 413, "limit is 5")
    big = ndjson(*(batch(f"c-{i}", n=400) for i in range(3)))
    assert_problem(client.post("/api/v1/batches/bulk", content=big, headers=NDJSON), 413,
                   "1200 samples", "limit is 1000")
    assert_problem(client.post("/api/v1/batches/bulk", content=ndjson(batch()),
                               headers={"content-type": "application/json"}), 415, "x-ndjson")
    assert_problem(client.post("/api/v1/batches/bulk", content=b"not gzip",
                               headers={**NDJSON, "content-encoding": "gzip"}), 400, "not gzip")
    empty = client.post("/api/v1/batches/bulk", content=b"\n\n", headers=NDJSON)
    assert empty.status_code == 200 and empty.json() == {"batches": [], "accepted": 0, "duplicates": 0,
                                                         "errors": 0}
    assert stored_count(client) == 0


def test_bulk_needs_a_write_token_before_reading_the_body(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    reader = create_token(settings, "reader", Scope.READ)
    writer = create_token(settings, "agent-1", Scope.WRITE)  # the producer it writes as
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert_problem(c.post("/api/v1/batches/bulk", content=b"{garbage", headers=NDJSON), 401)
        assert_problem(c.post("/api/v1/batches/bulk", content=ndjson(batch()),
                              headers={**NDJSON, "authorization": f"Bearer {reader}"}), 403, "needs write")
        ok = c.post("/api/v1/batches/bulk", content=ndjson(batch()),
                    headers={**NDJSON, "authorization": f"Bearer {writer}"})
        assert ok.status_code == 200 and ok.json()["accepted"] == 10


def test_bulk_over_the_producer_rate_limit_is_429_for_the_whole_request(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    settings.limits.rate_samples_per_s = 1
    settings.limits.rate_burst_samples = 15
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert c.post("/api/v1/batches/bulk", content=ndjson(batch("b-1")), headers=NDJSON).status_code == 200
        r = c.post("/api/v1/batches/bulk", content=ndjson(batch("b-2"), batch("b-3")), headers=NDJSON)
        assert_problem(r, 429, "agent-1")
        assert int(r.headers["retry-after"]) >= 1
        assert stored_count(c) == 10


def test_a_seq_beyond_64_bits_is_answered(client: httpx.Client) -> None:
    """The wire format does not bound ``seq``; the fast JSON encoder of the answer does (found by
    schemathesis): the answer must still be a 200 with the number intact."""
    doc = batch_to_dict(batch("b-big"))
    doc["seq"] = 2**70
    r = client.post("/api/v1/batches/bulk", content=ndjson(json.dumps(doc).encode()), headers=NDJSON)
    assert r.status_code == 200, r.text
    assert r.json()["batches"][0]["seq"] == 2**70
