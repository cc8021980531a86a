"""Liveness, readiness, Prometheus metrics and token administration."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ingest.api.deps import CanAdmin, ServiceDep
from ingest.auth import TokenFile
from ingest.problems import Problem
from zhizao.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    store: str


@router.get("/healthz", response_model=Health)
async def healthz(service: ServiceDep) -> Health:
    """The process is alive (does not touch the store)."""
    return Health(status="ok", store=service.store.name)


@router.get("/readyz", response_model=Health, responses={503: {"description": "store unreachable"}})
async def readyz(service: ServiceDep) -> Health:
    """Ready when the store answers within 2 s."""
    try:
        await asyncio.wait_for(service.store.ping(), 2.0)
    except (StoreUnavailable, TimeoutError) as exc:
        service.metrics.store_up.set(0)
        raise Problem(503, f"store {service.store.name} is not reachable: {exc or 'timeout'}",
                      headers={"Retry-After": str(service.settings.storage.retry_after_s)}) from None
    service.metrics.store_up.set(1)
    return Health(status="ready", store=service.store.name)


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
