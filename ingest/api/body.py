"""Reading request bodies with a size cap and a checked Content-Encoding."""

from __future__ import annotations

from fastapi import Request

from ingest.problems import Problem
from ingest.service import IngestService

_GZIP_MAGIC = b"\x1f\x8b"


async def read_body(request: Request, service: IngestService) -> bytes:
    """The raw body (still gzip if it was sent so), refused with 413 past ``limits.max_body_bytes``
    and with 415 for a Content-Encoding other than identity/gzip."""
    limit = service.settings.limits.max_body_bytes
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise service.refuse(Problem(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none",
                                     reason="bad_encoding"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise service.refuse(Problem(413, f"body of {declared} bytes exceeds the limit of {limit} bytes",
                                     reason="body_too_large", limit=limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise service.refuse(Problem(413, f"body exceeds the limit of {limit} bytes",
                                         reason="body_too_large", limit=limit))
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding == "gzip" and not body.startswith(_GZIP_MAGIC):
        raise service.refuse(Problem(400, "Content-Encoding is gzip but the body is not gzip data",
                                     reason="bad_encoding"))
    return body
