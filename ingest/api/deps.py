"""Dependencies shared by the routes: the service, the store, and scope checks.

Scope checks run before the route reads its body, so an unauthenticated or out-of-scope
request is refused (401/403) before any body validation and writes nothing. Which producers a
write token may write batches as is checked by the service once the batch is decoded
(:meth:`ingest.service.IngestService.ingest_batch`), before anything is stored; which events it
may post, by the events route once they are validated (:mod:`ingest.eventbinding`).

A token is read from ``Authorization`` (``Bearer``/``Token``, or ``Basic`` with the token as
password); only on the InfluxDB-compatible routes (:data:`QUERY_TOKEN_PATHS`) also from the query
string (``?u=&p=<token>``, as InfluxDB 1.x clients send it) — anywhere else a token in a URL would
end up in proxy logs and browser history, so it is not looked at there.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from ingest.auth import Scope, TokenFile, TokenRecord
from ingest.problems import Problem
from ingest.service import IngestService
from ingest.storage.base import Store
from zhizao.errors import ConfigError

log = logging.getLogger(__name__)


async def get_service(request: Request) -> IngestService:
    """The app's service (async: FastAPI would run a sync dependency in a worker thread)."""
    return service_of(request)


def get_store(request: Request) -> Store:
    """The app's open store (sync, for other components' routers: ``Callable[[Request], Store]``)."""
    return service_of(request).store


async def _store(request: Request) -> Store:
    return service_of(request).store


def service_of(request: Request) -> IngestService:
    service: IngestService = request.app.state.service
    return service


ServiceDep = Annotated[IngestService, Depends(get_service)]
StoreDep = Annotated[Store, Depends(_store)]


QUERY_TOKEN_PATHS: frozenset[str] = frozenset({"/write", "/query", "/api/v2/write"})
"""The InfluxDB-compatible routes, the only ones taking a token from the query string (``p``)."""


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():  # InfluxDB 1.x clients: user:<token>
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    # InfluxDB 1.x clients put the password (our token) in the query string: on their routes only
    if request.scope["path"] in QUERY_TOKEN_PATHS:
        return request.query_params.get("p") or None
    return None


async def authorize(request: Request, scope: Scope) -> TokenRecord | None:
    """The request's token record if it holds ``scope`` (``None`` with auth disabled); refuses
    with 401 (no, unknown or revoked token) or 403 (scope missing) otherwise. Hot routes call it
    directly; the others through :func:`require`."""
    service = service_of(request)
    if not service.settings.auth.enabled:
        return None
    tokens: TokenFile = request.app.state.tokens
    token = _token_of(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="zhizao"'}
    if token is None:
        raise service.refuse(Problem(
            401, "missing token: send 'Authorization: Bearer <token>' (create one with "
            "'zhizao ingest token create')", reason="no_token", headers=challenge))
    record = tokens.lookup(token)
    if record is None:
        raise service.refuse(Problem(401, "unknown token", reason="bad_token", headers=challenge))
    if record.revoked is not None:
        raise service.refuse(Problem(401, f"token {record.id} was revoked at {record.revoked}",
                                     reason="revoked_token", headers=challenge))
    if not record.allows(scope):
        raise service.refuse(Problem(
            403, f"token {record.id} ({record.name}) has scopes {', '.join(record.scopes)}; "
            f"this needs {scope.value}", reason="missing_scope"))
    return record


def may_read(request: Request) -> bool:
    """Whether the request may see what the read scope shows: auth is disabled, or it carries a
    valid, unrevoked token holding ``read`` (or ``admin``). Never refuses, counts or logs: for
    routes that answer everyone and tell more to readers (``/readyz``). An unreadable tokens file
    counts as no token."""
    if not service_of(request).settings.auth.enabled:
        return True
    token = _token_of(request)
    if token is None:
        return False
    tokens: TokenFile = request.app.state.tokens
    try:
        record = tokens.lookup(token)
    except ConfigError:
        return False
    return record is not None and record.allows(Scope.READ)


def require(scope: Scope) -> Callable[[Request], Awaitable[TokenRecord | None]]:
    """A dependency refusing requests without a valid, unrevoked token holding ``scope``."""

    async def check(request: Request) -> TokenRecord | None:
        return await authorize(request, scope)

    return check


CanWrite = Annotated[TokenRecord | None, Depends(require(Scope.WRITE))]
CanRead = Annotated[TokenRecord | None, Depends(require(Scope.READ))]
CanAdmin = Annotated[TokenRecord | None, Depends(require(Scope.ADMIN))]
