"""InfluxDB-compatible writes: ``POST /api/v2/write`` (Telegraf ``outputs.influxdb_v2``) and ``/write``.

Line protocol carries no producer and no batch id (nothing to deduplicate, nothing a token could
write on another producer's behalf): the *producer* of a line-protocol write is the name of the
token that sent it (``line-protocol`` with auth disabled), and its values count against that
producer's rate limit (``limits.rate_samples_per_s``), as a batch of that producer would. Any token
with the write scope may write line protocol, whatever producers it is bound to for batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ingest import lineproto
from ingest.api.body import read_body
from ingest.api.deps import CanWrite, ServiceDep
from ingest.auth import TokenRecord
from ingest.problems import Problem
from ingest.service import Charge, IngestService
from zhizao.errors import TooLarge, WireFormatError
from zhizao.wire import decompress

router = APIRouter(tags=["line protocol"])
log = logging.getLogger(__name__)
_TEXT = {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}


def line_protocol_producer(writer: TokenRecord | None) -> str:
    """The producer a line-protocol write counts as: the token's name (auth off: ``line-protocol``)."""
    return "line-protocol" if writer is None else writer.name


_ON_LOOP_BYTES: Final = 64 * 1024
"""A body up to this size (not gzip) is parsed on the event loop; a larger one in a worker thread
(``asyncio.to_thread``): a body near ``limits.max_body_bytes`` takes seconds to parse, during which
the loop would answer no other request (agents' batches, ``/healthz``)."""


async def _write(request: Request, service: IngestService, precision: str,
                 writer: TokenRecord | None) -> Response:
    body = await read_body(request, service)
    if len(body) > _ON_LOOP_BYTES or body.startswith(b"\x1f\x8b"):  # gzip: it may inflate 1000-fold
        parsed = await asyncio.to_thread(_parse, service, body, precision)
    else:
        parsed = _parse(service, body, precision)
    limit = service.settings.limits.max_samples_per_batch
    if parsed.over_limit:
        raise service.refuse(Problem(
            413, f"body has more than {limit} field values; the limit is {limit} per write (read up to "
            "there, nothing stored)", reason="too_many_samples", limit=limit))
    service.metrics.ignored_tags.inc(parsed.ignored_tags)
    stored, dropped = 0, 0
    if len(parsed.frame):
        charge = Charge(line_protocol_producer(writer), len(parsed.frame))
        result = await service.write_frame(parsed.frame, None, "line_protocol", charge)
        stored, dropped = result.accepted, len(result.dropped)
        # by reason: "retention" (beyond InfluxDB's retention policy), "ts" (outside its time range)
        for label, n in Counter(reason.split(":", 1)[0] for _, reason in result.dropped).items():
            service.metrics.samples_rejected.labels(label).inc(n)
    if parsed.errors:
        service.metrics.samples_rejected.labels("line_protocol").inc(len(parsed.errors))
    if parsed.errors or dropped:  # what InfluxDB itself answers for a partial write: 400
        shown = "; ".join(f"line {n}: {why}" for n, why in parsed.errors[:5])
        more = f" (and {len(parsed.errors) - 5} more)" if len(parsed.errors) > 5 else ""
        lines = f", {len(parsed.errors)} lines rejected: {shown}{more}" if parsed.errors else ""
        kept = f", {dropped} values not kept by the store — {_why(result.dropped)}" if dropped else ""
        raise service.refuse(Problem(
            400, f"partial write: {stored} values stored{kept}{lines}",
            reason="line_protocol" if parsed.errors else "store_dropped",
            errors=[{"line": n, "message": why} for n, why in parsed.errors[:100]]))
    return Response(status_code=204)


def _why(dropped: Sequence[tuple[int, str]]) -> str:
    """Why the store did not keep ``dropped`` values, by reason: ``N: <reason>`` (a reason's text
    from its "not stored — " to its "; the batch's other samples were stored")."""
    whys = Counter(reason.partition(" — ")[2].partition("; the batch")[0] or reason for _, reason in dropped)
    return "; ".join(f"{n}: {why}" for why, n in whys.items())


def _parse(service: IngestService, body: bytes, precision: str) -> lineproto.ParsedLines:
    """``body`` (possibly gzip) inflated, decoded and parsed, stopping past
    ``limits.max_samples_per_batch`` values (``over_limit``); ``Problem`` 413/400 for a body that
    inflates too far, is not UTF-8 or names an unknown precision."""
    limits = service.settings.limits
    limit = limits.max_body_bytes
    try:
        body = decompress(body, max_bytes=limit)  # every gzip member, each read to its end
    except WireFormatError as exc:
        if isinstance(exc, TooLarge):
            raise service.refuse(Problem(413, f"body inflates past the limit of {limit} bytes",
                                         reason="body_too_large", limit=limit)) from None
        raise service.refuse(Problem(400, exc.message, reason="bad_encoding")) from None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise service.refuse(Problem(400, f"line protocol must be UTF-8: {exc}",
                                     reason="bad_encoding")) from None
    try:
        return lineproto.parse(text, precision, max_values=limits.max_samples_per_batch)
    except ValueError as exc:
        raise service.refuse(Problem(400, str(exc), reason="bad_precision")) from None


@router.post("/api/v2/write", status_code=204, openapi_extra={"requestBody": _TEXT})
async def write_v2(request: Request, service: ServiceDep, *, writer: CanWrite,
                   precision: Annotated[str, Query(pattern="^(ns|us|ms|s)$")] = "ns",
                   org: str | None = None, bucket: str | None = None) -> Response:
    """InfluxDB 2.x write API. ``org`` and ``bucket`` are accepted and ignored (one store)."""
    return await _write(request, service, precision, writer)


@router.post("/write", status_code=204, openapi_extra={"requestBody": _TEXT})
async def write_v1(request: Request, service: ServiceDep, *, writer: CanWrite,
                   precision: Annotated[str, Query(pattern="^(ns|n|us|u|ms|s|m|h)$")] = "ns",
                   db: str | None = None, rp: str | None = None) -> Response:
    """InfluxDB 1.x write API (token as Bearer/Token header, basic auth, or the ``p`` query parameter)."""
    return await _write(request, service, precision, writer)
