"""``POST /api/v1/batches``: zhizao wire-format batches (JSON, optionally gzip)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from ingest.api.body import read_body
from ingest.api.deps import authorize, service_of
from ingest.auth import Scope, TokenRecord
from ingest.problems import PROBLEM_JSON, Problem
from ingest.service import BatchOutcome, IngestService, LineError

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


class LineProblem(BaseModel):
    status: int
    detail: str


class BulkLine(BaseModel):
    """One line of a bulk request: its batch result, or ``error`` when that line alone was refused
    (it would be refused again: do not resend it)."""

    line: int
    producer: str | None = None
    batch_id: str | None = None
    seq: int | None = None
    accepted: int | None = None
    rejected: list[RejectedSample] | None = None
    duplicate: bool | None = None
    error: LineProblem | None = None


class BulkResult(BaseModel):
    """``batches``: one entry per non-blank line, in order; totals over them."""

    batches: list[BulkLine]
    accepted: int
    """Samples stored by this request (duplicates not counted)."""
    duplicates: int
    errors: int


def batch_schemas() -> dict[str, dict[str, Any]]:
    """OpenAPI components for the wire format: ``BatchV1`` and ``BatchV2`` (the published JSON
    Schemas, ``$defs`` moved to ``BatchV<n>_<name>`` components) and ``Batch``, either of them."""
    out: dict[str, dict[str, Any]] = {}
    for version in (1, 2):
        name = f"BatchV{version}"
        text = resources.files("zhizao").joinpath(f"schema/batch-v{version}.schema.json").read_text(
            encoding="utf-8")
        doc: dict[str, Any] = json.loads(text.replace("#/$defs/", f"#/components/schemas/{name}_"))
        for key, sub in doc.pop("$defs").items():
            out[f"{name}_{key}"] = sub
        doc.pop("$schema", None)
        doc.pop("$id", None)
        out[name] = doc
    out["Batch"] = {"description": "A batch in either version of zhizao's wire format.",
                    "oneOf": [{"$ref": f"#/components/schemas/BatchV{v}"} for v in (1, 2)]}
    return out


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {PROBLEM_JSON: {}}}
    for code, text in ((400, "Malformed batch envelope"), (401, "No valid token"),
                       (403, "Token lacks the write scope, or may not write as a batch's producer"),
                       (413, "Body or batch too large"),
                       (415, "Unsupported Content-Type or Content-Encoding"),
                       (429, "Producer rate limit exceeded"), (503, "Store unavailable; nothing stored"))
}


@router.post(
    "/batches", response_model=BatchResult, responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}}}},
)
async def post_batch(request: Request) -> Response:
    """Store a batch. Idempotent on (producer, batch_id); answered only after the store committed.

    Send ``Content-Encoding: gzip`` for compressed bodies. Invalid samples are rejected one by one
    (index and reason in the answer) while the valid ones are stored; an invalid envelope rejects
    the whole batch with 400.
    """
    # The hottest route (served by ingest.app.WriteFront): no FastAPI dependencies and no
    # response-model round trip (together ~0.1 ms of CPU per request, measured); the token is
    # checked first, the answer has BatchResult's shape (tests/ingest/test_write_front.py).
    service, writer, body = await _write_request(request, _MEDIA, default="application/json")
    outcome = await service.ingest_batch(body, writer)
    return _json_answer(_result(outcome))


async def _write_request(request: Request, media: tuple[str, ...], *,
                         default: str) -> tuple[IngestService, TokenRecord | None, bytes]:
    """The service, the token's record (``None`` with auth disabled) and raw body of a write
    request, checked in this order: the token (401/403), the Content-Type (415; ``default`` when
    absent), then the body (see :func:`read_body`). The producers the token may write as are
    checked by the service once the body is decoded (403)."""
    service = service_of(request)
    writer = await authorize(request, Scope.WRITE)
    ctype = request.headers.get("content-type", default).split(";")[0].strip().lower()
    if ctype not in media:
        raise service.refuse(Problem(415, f"Content-Type {ctype!r} is not supported; send {media[0]}",
                                     reason="bad_content_type"))
    return service, writer, await read_body(request, service)


def _result(outcome: BatchOutcome) -> dict[str, Any]:
    """The :class:`BatchResult` of ``outcome``, as a plain dict."""
    return {"producer": outcome.producer, "batch_id": outcome.batch_id, "seq": outcome.seq,
            "accepted": outcome.accepted, "duplicate": outcome.duplicate,
            "rejected": [{"index": i, "reason": r} for i, r in sorted(outcome.rejected.items())]}


def _json_answer(doc: dict[str, Any]) -> Response:
    try:
        content = orjson.dumps(doc)
    except TypeError:  # a seq beyond 64 bits (the wire format does not bound it): the slow encoder
        content = json.dumps(doc, ensure_ascii=False).encode()
    return Response(content, media_type="application/json")


_NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-seq")


@router.post(
    "/batches/bulk", response_model=BulkResult, responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-ndjson": {"schema": {
            "type": "array", "items": {"$ref": "#/components/schemas/Batch"},
            "description": "one Batch document (either version) per line (NDJSON), not a JSON array"}}}}},
)
async def post_bulk(request: Request) -> Response:
    """Store many batches in one request: NDJSON, one wire-format batch document per line.

    For forwarders (the site gateway, a backlogged agent) whose batches are small: each line keeps
    its own (producer, batch_id) and is deduplicated on its own, and all of them are committed
    together before the answer. A line that is bad on its own gets an ``error`` entry (status and
    detail as ``POST /api/v1/batches`` would answer it) and does not stop the others. Limits:
    ``limits.max_bulk_batches`` lines and ``limits.max_bulk_samples`` samples per request (413).
    Send ``Content-Encoding: gzip`` to compress the whole body.
    """
    service, writer, body = await _write_request(request, _NDJSON, default="")  # hot route: see post_batch
    outcome = await service.ingest_bulk(body, writer)
    lines: list[dict[str, Any]] = []
    accepted = duplicates = errors = 0
    for n, item in enumerate(outcome.lines):
        if isinstance(item, LineError):
            errors += 1
            lines.append({"line": n, "producer": None, "batch_id": None, "seq": None, "accepted": None,
                          "rejected": None, "duplicate": None,
                          "error": {"status": item.status, "detail": item.detail}})
            continue
        if item.duplicate:
            duplicates += 1
        else:
            accepted += item.accepted
        lines.append({"line": n, **_result(item), "error": None})
    # built directly (a forwarder's answer has up to max_bulk_batches lines): same shape as BulkResult
    return _json_answer({"batches": lines, "accepted": accepted, "duplicates": duplicates, "errors": errors})
