"""RFC 9457 problem details: every error response of the API is ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ingest.storage.base import DataRefused
from zhizao.errors import StoreUnavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    413: "Content too large", 415: "Unsupported media type", 422: "Invalid parameters",
    429: "Too many requests", 500: "Internal server error", 503: "Service unavailable",
}

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class OutcomeUnknown(StoreUnavailable):
    """The store neither committed a write nor said it had not, within the write timeout and the
    stop's grace (:data:`ingest.service.STOP_GRACE_S`): answered 503, but **not** "nothing was
    stored" — it may be stored still."""


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document.

    ``extra`` members are added to the document (e.g. ``errors``, ``limit``); ``headers`` to the
    response (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, detail: str, *, title: str | None = None, reason: str = "",
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.reason = reason or self.title.lower().replace(" ", "_")
        self.headers = headers or {}
        self.extra = extra


def problem_response(p: Problem, instance: str = "") -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": p.title, "status": p.status, "detail": p.detail}
    if instance:
        body["instance"] = instance
    body.update(p.extra)
    return Response(orjson.dumps(body), status_code=p.status, media_type=PROBLEM_JSON, headers=p.headers)


def problem_of(exc: Exception, retry_after_s: int, where: str) -> Problem:
    """The problem answering ``exc`` raised while handling ``where`` (``"METHOD /path"``):
    itself for a :class:`Problem`, 503 with ``Retry-After`` for ``StoreUnavailable`` (for a
    write: nothing was stored — for :class:`OutcomeUnknown`: it may be stored; for a read —
    GET, HEAD, OPTIONS — nothing could be read), 422 for
    ``DataRefused`` (the store refused the data itself: permanent, never 503), 500 for anything
    else (a bug: logged with its traceback)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, DataRefused):
        log.warning("store refused the data on %s: %s", where, exc.reason)
        return Problem(422, f"the store refused the data, nothing was acknowledged; resending it unchanged "
                       f"cannot succeed: {exc.reason}", reason="store_refused")
    if isinstance(exc, OutcomeUnknown):
        log.warning("store unavailable on %s: %s", where, exc)
        return Problem(503, f"storage is unavailable; this write may still be stored: the store did not say "
                       f"whether it committed ({exc}); retry in {retry_after_s} s",
                       headers={"Retry-After": str(retry_after_s)})
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable on %s: %s", where, exc)
        if where.split(" ", 1)[0].upper() in _READS:
            detail = f"storage is unavailable, cannot read; retry in {retry_after_s} s ({exc})"
        else:
            detail = f"storage is unavailable, nothing was stored; retry in {retry_after_s} s ({exc})"
        return Problem(503, detail, headers={"Retry-After": str(retry_after_s)})
    log.error("unexpected error on %s", where, exc_info=exc)
    return Problem(500, f"internal error ({type(exc).__name__}); nothing was acknowledged — see the "
                   "ingest log")


def install(app: FastAPI, retry_after_s: int) -> None:
    """Register the handlers turning every error into problem+json (and StoreUnavailable into 503)."""

    async def on_error(request: Request, exc: Exception) -> Response:
        where = f"{request.method} {request.url.path}"
        return problem_response(problem_of(exc, retry_after_s, where), request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            message = str(err.get("msg", "")).removeprefix("Value error, ")  # pydantic's prefix: noise
            errors.append({"field": loc, "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "invalid request"
        return problem_response(Problem(422, detail, errors=errors), request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(Problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})),
                                request.url.path)

    app.add_exception_handler(Problem, on_error)
    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreUnavailable, on_error)
    app.add_exception_handler(DataRefused, on_error)
