"""The batch write endpoint over a real uvicorn server: good, bad, oversized and mis-encoded bodies."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ingest.settings import Settings
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count
from zhizao.wire import batch_to_dict, encode_batch


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = server_settings(tmp_path)
    s.limits.max_body_bytes = 200_000
    s.limits.max_samples_per_batch = 500
    return s


@pytest.fixture
def client(settings: Settings) -> Iterator[httpx.Client]:
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=10) as c:
        yield c


def test_batch_stored_and_resend_acknowledged_once(client: httpx.Client) -> None:
    r = post(client, batch("b-1"))
    assert r.status_code == 200
    assert r.json() == {"producer": "agent-1", "batch_id": "b-1", "seq": 1, "accepted": 10, "rejected": [],
                        "duplicate": False}
    again = post(client, batch("b-1"), gzip=True)
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["accepted"] == 10
    assert stored_count(client) == 10


def test_invalid_samples_rejected_by_index_valid_ones_stored(client: httpx.Client) -> None:
    doc = batch_to_dict(batch("b-2", n=4))
    doc["samples"][1]["ts"] = "2026-11-23T08:00:00"  # naive
    doc["samples"][3]["value"] = [1, 2]
    r = client.post("/api/v1/batches", content=orjson.dumps(doc))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [1, 3]
    assert body["rejected"][0]["reason"].startswith("ts: ") and "UTC offset" in body["rejected"][0]["reason"]
    assert body["rejected"][1]["reason"].startswith("value: ")
    assert stored_count(client) == 2
    metrics = client.get("/metrics").text
    assert 'zhizao_ingest_samples_rejected_total{reason="ts"} 1.0' in metrics


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"format": "zhizao.batch"}', "required field is missing"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
])
def test_malformed_bodies_get_400_and_store_nothing(client: httpx.Client, body: bytes, fragment: str) -> None:
    assert_problem(client.post("/api/v1/batches", content=body), 400, fragment)
    assert stored_count(client) == 0


def test_version_2_batch_stored_with_rejections_indexed_in_document_order(client: httpx.Client) -> None:
    """Wire format v2 (samples grouped into series): stored like v1, a rejection's index counts
    samples series after series, a bad series field rejects its whole series, a resend is a
    duplicate whichever version it comes in."""
    doc: dict[str, Any] = {
        "format": "zhizao.batch", "version": 2, "producer": "agent-1", "batch_id": "b-v2", "seq": 1,
        "series": [
               {"asset": "plant/a1/line1/cnc-1", "signal": "power_kw", "unit": "kW",
                "ts": ["2026-11-23T08:00:00.000000Z", "2026-11-23T08:00:01.000000Z"], "value": [1.5, 2.5]},
               {"asset": "plant/a1/line1/cnc-1", "signal": "state",
                "ts": ["2026-11-23T08:00:00.000000Z", "2026-11-23T08:00:01", "2026-11-23T08:00:02.000000Z"],
                "value": ["running", "running", "idle"]},
               {"asset": "not/a/path", "signal": "power_kw", "ts": ["2026-11-23T08:00:00.000000Z"],
                "value": [1.0]}]}
    r = client.post("/api/v1/batches", content=orjson.dumps(doc))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 4 and body["duplicate"] is False
    assert [(x["index"], x["reason"].split(":")[0]) for x in body["rejected"]] == [(3, "ts"), (5, "asset")]
    assert stored_count(client) == 4
    again = client.post("/api/v1/batches", content=gzip.compress(orjson.dumps(doc)),
                        headers={"Content-Encoding": "gzip"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    as_v1 = batch_to_dict(batch("b-v2"))
    assert client.post("/api/v1/batches", content=orjson.dumps(as_v1)).json()["duplicate"] is True
    doc["series"][0]["value"].pop()
    bad = client.post("/api/v1/batches", content=orjson.dumps({**doc, "batch_id": "b-v2-bad"}))
    assert_problem(bad, 400, "series[0].value: has 1 entries but ts has 2")
    assert stored_count(client) == 4


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("seq", "seven", "seq: must be an integer"),
    ("version", 3, "unsupported version 3; this reader speaks 1 and 2"),
    ("producer", "bad producer!", "producer: must be"),
    ("samples", {"a": 1}, "samples: must be an array"),
    ("extra", 1, "extra: unknown field"),
])
def test_wrong_typed_envelope_gets_400_naming_the_field(
        client: httpx.Client, field: str, value: object, fragment: str) -> None:
    doc = batch_to_dict(batch())
    doc[field] = value
    r = client.post("/api/v1/batches", content=orjson.dumps(doc))
    assert_problem(r, 400, fragment)
    assert r.json()["errors"][0]["field"] == field
    assert stored_count(client) == 0


def test_oversized_bodies_get_413_with_the_limit(client: httpx.Client, settings: Settings) -> None:
    big = encode_batch(batch(n=400)) + b" " * 200_000
    assert_problem(client.post("/api/v1/batches", content=big), 413, "200000")
    # a small gzip that inflates past the limit (a gzip bomb) is refused too
    bomb = gzip.compress(b'{"format": "zhizao.batch", ' + b" " * 1_000_000 + b"}")
    assert len(bomb) < 200_000
    assert_problem(client.post("/api/v1/batches", content=bomb, headers={"content-encoding": "gzip"}), 413,
                   "200000")
    # too many samples
    r = post(client, batch(n=501))
    assert_problem(r, 413, "501 samples", "limit is 500")
    assert r.json()["limit"] == 500
    assert stored_count(client) == 0


def test_wrongly_encoded_bodies_get_4xx(client: httpx.Client) -> None:
    plain = encode_batch(batch())
    assert_problem(client.post("/api/v1/batches", content=plain, headers={"content-encoding": "gzip"}), 400,
                   "not gzip")
    assert_problem(client.post("/api/v1/batches", content=plain, headers={"content-encoding": "br"}), 415,
                   "br")
    assert_problem(client.post("/api/v1/batches", content=plain, headers={"content-type": "text/csv"}), 415,
                   "text/csv")
    truncated = encode_batch(batch(), compress=True)[:-20]
    assert_problem(client.post("/api/v1/batches", content=truncated, headers={"content-encoding": "gzip"}),
                   400, "gzip")
    assert stored_count(client) == 0


def test_rate_limit_429_with_retry_after(tmp_path: Path) -> None:
    s = server_settings(tmp_path)
    s.limits.rate_samples_per_s = 10
    s.limits.rate_burst_samples = 20
    with run_server(s) as url, httpx.Client(base_url=url) as c:
        assert post(c, batch("b-1", n=15)).status_code == 200
        r = post(c, batch("b-2", n=15))
        assert_problem(r, 429, "agent-1", "10 samples/s")
        assert int(r.headers["retry-after"]) >= 1
        assert post(c, batch("b-3", n=15, producer="agent-2")).status_code == 200  # per producer
        assert stored_count(c) == 30


def test_health_ready_metrics_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "store": "duckdb"}
    assert client.get("/readyz").status_code == 200
    post(client, batch("b-1"))
    post(client, batch("b-1"))
    metrics = client.get("/metrics").text
    for name in ("zhizao_ingest_request_seconds_bucket",
                 'zhizao_ingest_samples_written_total{source="batch"} 10.0',
                 "zhizao_ingest_dedup_hits_total 1.0", "zhizao_ingest_store_errors_total"):
        assert name in metrics, name
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/v1/batches" in spec["paths"]
    assert {"Batch", "BatchV1", "BatchV2"} <= spec["components"]["schemas"].keys()


@pytest.mark.parametrize("route", ["single", "bulk"])
def test_rejections_of_a_resent_batch_are_counted_once(client: httpx.Client, route: str) -> None:
    """A batch with a rejected sample, sent twice (its ack was lost): the second answer is a
    duplicate and the rejection is counted once, not once per send (review 47: counted before the
    store was asked, so again for each resend and each 503)."""
    doc = batch_to_dict(batch("r-1", n=3))
    doc["samples"][1]["ts"] = "2026-11-23T08:00:00"  # naive: rejected
    body = orjson.dumps(doc)
    for _ in range(2):
        if route == "single":
            r = client.post("/api/v1/batches", content=body, headers={"content-type": "application/json"})
            duplicate = r.json().get("duplicate")
        else:
            r = client.post("/api/v1/batches/bulk", content=body + b"\n",
                            headers={"content-type": "application/x-ndjson"})
            duplicate = r.json()["batches"][0].get("duplicate")
        assert r.status_code == 200, r.text
    assert duplicate is True
    metrics = client.get("/metrics").text
    assert 'zhizao_ingest_samples_rejected_total{reason="ts"} 1.0' in metrics, \
        [m for m in metrics.splitlines() if "samples_rejected_total{" in m]
