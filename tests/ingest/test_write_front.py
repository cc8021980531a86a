"""The write routes are served by ``WriteFront`` (outside FastAPI's stack): same answers, same
metrics, and everything else still reaches FastAPI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import BaseModel

from ingest.api.batches import BatchResult, BulkLine, BulkResult, LineProblem, RejectedSample
from ingest.storage.base import BatchKey, SampleFrame, WriteResult
from ingest.storage.duckdb.store import DuckDBStore
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post
from zhizao.wire import batch_to_dict, encode_batch


class BuggyStore(DuckDBStore):
    """A real DuckDB store whose writes hit a bug (not an outage)."""

    async def write(self, frame: SampleFrame, key: BatchKey | None = None) -> WriteResult:
        raise RuntimeError("a bug in the store")


def test_a_bug_is_a_500_problem_and_nothing_is_acknowledged(tmp_path: Path) -> None:
    store = BuggyStore(tmp_path / "bug.duckdb")
    asyncio.run(store.__aenter__())
    try:
        with run_server(server_settings(tmp_path), store=store) as url, \
                httpx.Client(base_url=url, timeout=10) as c:
            r = post(c, batch("b-1"))
            assert_problem(r, 500, "internal store error (RuntimeError)")
            assert r.json()["instance"] == "/api/v1/batches"
            r = c.post("/api/v1/batches/bulk", content=post_body("b-2"),
                       headers={"content-type": "application/x-ndjson"})
            assert_problem(r, 500, "nothing was acknowledged")
            assert c.get("/healthz").status_code == 200  # the server goes on
    finally:
        asyncio.run(store.__aexit__(None, None, None))


def post_body(batch_id: str) -> bytes:
    return encode_batch(batch(batch_id))


def test_other_methods_and_paths_still_reach_fastapi(tmp_path: Path) -> None:
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert_problem(c.get("/api/v1/batches"), 405, "")
        assert_problem(c.post("/api/v1/batches/other", content=b"{}"), 404, "")
        assert post(c, batch("b-1")).status_code == 200
        assert_problem(c.post("/api/v1/batches", content=b"{", headers={"content-type": "application/json"}),
                       400, "")
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_request_seconds_count{route="/api/v1/batches",status="2xx"} 1.0' in metrics
        assert 'zhizao_ingest_request_seconds_count{route="/api/v1/batches",status="4xx"}' in metrics


def _exact(model: type[BaseModel], doc: dict[str, Any]) -> None:
    """``doc`` has exactly ``model``'s fields (recursively for lists of models) and validates."""
    assert set(doc) == set(model.model_fields), (model.__name__, sorted(doc))
    model.model_validate(doc, strict=True)


def test_answers_have_exactly_the_documented_shapes(tmp_path: Path) -> None:
    """The hot routes build their JSON by hand: it must stay what OpenAPI documents."""
    bad = batch_to_dict(batch("b-2", n=3))
    bad["samples"][1]["ts"] = "yesterday"
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/api/v1/batches", content=orjson.dumps(bad), headers={"content-type": "application/json"})
        assert r.status_code == 200
        _exact(BatchResult, r.json())
        _exact(RejectedSample, r.json()["rejected"][0])
        body = b"\n".join([encode_batch(batch("b-3")), orjson.dumps(bad), b"{not json"])
        r = c.post("/api/v1/batches/bulk", content=body, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200
        doc = r.json()
        _exact(BulkResult, doc)
        for line in doc["batches"]:
            _exact(BulkLine, line)
        assert doc["batches"][1]["duplicate"] is True and doc["batches"][2]["error"]["status"] == 400
        _exact(LineProblem, doc["batches"][2]["error"])
