"""Liveness, readiness, Prometheus metrics and token administration."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ingest.api.deps import CanAdmin, ServiceDep, may_read
from ingest.auth import TokenFile
from ingest.problems import PROBLEM_JSON, Problem
from zhizao.errors import StoreUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
PING_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: str
    store: str


class Readiness:
    """What ``/readyz`` last found, to log each change once: probes come every few seconds, and an
    outage must not log a line per probe."""

    def __init__(self) -> None:
        self.ready: bool | None = None
        """``None`` before the first probe."""

    def observe(self, store: str, problem: str | None) -> None:
        """Record a probe's outcome (``problem``: why the store is not ready; ``None``: ready).
        Logs a WARNING with the problem when ingest turns not ready (the first probe included),
        an INFO when it is ready again; nothing while the state stays the same."""
        ready = problem is None
        if ready == self.ready:
            return
        previous, self.ready = self.ready, ready
        if not ready:
            log.warning("not ready: %s (logged once until the store answers again)", problem)
        elif previous is not None:
            log.info("ready again: store %s answers", store)


@router.get("/healthz", response_model=Health)
async def healthz(service: ServiceDep) -> Health:
    """The process is alive (does not touch the store)."""
    return Health(status="ok", store=service.store.name)


@router.get("/readyz", response_model=Health, responses={503: {
    "description": "Store unreachable: `not ready`, with the reason only for a read token",
    "content": {PROBLEM_JSON: {}}}})
async def readyz(request: Request, service: ServiceDep) -> Health:
    """Ready when the store answers within 2 s; else 503 with ``Retry-After``.

    Needs no token (for load balancers and orchestrators). The 503's detail then says only that
    ingest is not ready: the store's error may name hosts or carry InfluxDB's messages, so it is
    logged (once per change, :class:`Readiness`) and told only to a request with a valid read
    (or admin) token — or to any with auth disabled, where everyone may read. A token that is
    missing, unknown or without the read scope is not refused: it gets the short answer."""
    try:
        await asyncio.wait_for(service.store.ping(), PING_TIMEOUT_S)
    except (StoreUnavailable, TimeoutError) as exc:
        service.metrics.store_up.set(0)
        why = str(exc) or f"no answer within {PING_TIMEOUT_S:g} s"
        problem = f"store {service.store.name} is not reachable: {why}"
        readiness(request).observe(service.store.name, problem)
        detail = problem if may_read(request) else "not ready (the reason is in ingest's log)"
        raise Problem(503, detail, reason="not_ready",
                      headers={"Retry-After": str(service.settings.storage.retry_after_s)}) from None
    service.metrics.store_up.set(1)
    readiness(request).observe(service.store.name, None)
    return Health(status="ready", store=service.store.name)


def readiness(request: Request) -> Readiness:
    """The app's :class:`Readiness` (``app.state.readiness``, made by ``create_app``)."""
    state: Readiness = request.app.state.readiness
    return state


@router.get("/metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created: str
    revoked: str | None
    producers: list[str] | None
    """The producers it may write batches as (``[]``: none, or any for a forwarder); ``null``: a token
    from before bindings, which writes as any producer until re-created bound."""
    forwarder: bool


@router.get("/api/v1/admin/tokens", response_model=list[TokenOut], tags=["admin"])
async def list_tokens(request: Request, _auth: CanAdmin) -> list[TokenOut]:
    """Tokens (never their secrets or hashes). Needs the admin scope."""
    tokens: TokenFile = request.app.state.tokens
    return [TokenOut(id=r.id, name=r.name, scopes=r.scopes, created=r.created, revoked=r.revoked,
                     producers=r.producers, forwarder=r.forwarder)
            for r in tokens.records()]
