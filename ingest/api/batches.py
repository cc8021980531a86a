"""``POST /api/v1/batches``: zhizao wire-format batches (JSON, optionally gzip)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ingest.api.body import read_body
from ingest.api.deps import CanWrite, ServiceDep
from ingest.problems import PROBLEM_JSON, Problem

router = APIRouter(prefix="/api/v1", tags=["write"])
_MEDIA = ("application/json", "application/vnd.zhizao.batch+json")


class RejectedSample(BaseModel):
    index: int
    reason: str


class BatchResult(BaseModel):
    """What was stored: ``accepted`` samples; ``rejected`` ones with their index and reason.
    ``duplicate`` is true when this (producer, batch_id) was stored before: nothing was stored
    again and ``accepted`` is the count stored the first time."""

    producer: str
    batch_id: str
    seq: int
    accepted: int
    rejected: list[RejectedSample]
    duplicate: bool


def batch_schema() -> dict[str, Any]:
    """The wire-format JSON Schema with ``$defs`` references rewritten for OpenAPI components."""
    text = resources.files("zhizao").joinpath("schema/batch-v1.schema.json").read_text(encoding="utf-8")
    text = text.replace("#/$defs/", "#/components/schemas/BatchV1_")
    doc: dict[str, Any] = json.loads(text)
    return doc


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {}}}
    for code, text in ((400, "Malformed batch envelope"), (401, "No valid token"),
                       (403, "Token lacks the write scope"), (413, "Body or batch too large"),
                       (415, "Unsupported Content-Type or Content-Encoding"),
                       (429, "Producer rate limit exceeded"), (503, "Store unavailable; nothing stored"))
}


@router.post(
    "/batches", response_model=BatchResult, responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/BatchV1"}}}}},
)
async def post_batch(request: Request, service: ServiceDep, _auth: CanWrite) -> BatchResult:
    """Store a batch. Idempotent on (producer, batch_id); answered only after the store committed.

    Send ``Content-Encoding: gzip`` for compressed bodies. Invalid samples are rejected one by one
    (index and reason in the answer) while the valid ones are stored; an invalid envelope rejects
    the whole batch with 400.
    """
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in _MEDIA:
        raise service.refuse(Problem(415, f"Content-Type {ctype!r} is not supported; send {_MEDIA[0]}",
                                     reason="bad_content_type"))
    body = await read_body(request, service)
    outcome = await service.ingest_batch(body)
    return BatchResult(
        producer=outcome.producer, batch_id=outcome.batch_id, seq=outcome.seq, accepted=outcome.accepted,
        rejected=[RejectedSample(index=i, reason=r) for i, r in sorted(outcome.rejected.items())],
        duplicate=outcome.duplicate)
