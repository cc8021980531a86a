"""Liveness, readiness, Prometheus metrics and token administration; InfluxDB's ``/ping``,
``/health`` and ``/ready`` for its clients and tools ("test connection")."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from ingest.api.deps import CanAdmin, ServiceDep, may_read
from ingest.auth import TokenFile
from ingest.problems import PROBLEM_JSON, Problem
from ingest.service import IngestService
from zhizao import __version__
from zhizao.errors import StoreUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
PING_TIMEOUT_S = 2.0
INFLUX_VERSION: Final = f"zhizao-ingest-{__version__}"
"""What ``/ping`` answers in ``X-Influxdb-Version`` and ``/health`` in ``version``: ingest's own
version, not an InfluxDB one (clients show it; influxdb-client's ``version()`` returns it)."""
_PING_HEADERS: Final = {"X-Influxdb-Version": INFLUX_VERSION, "X-Influxdb-Build": "OSS"}


class Health(BaseModel):
    status: str
    store: str


class Readiness:
    """What ``/readyz`` last found, to log each change once: probes come every few seconds, and an
    outage must not log a line per probe."""

    def __init__(self) -> None:
        self.ready: bool | None = None
        """``None`` before the first probe."""
        self.started = Started()
        """When the app was made (``create_app`` makes this object): ``/ready``'s ``started``, ``up``."""

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
    detail = await _probe(request)
    if detail is not None:
        raise Problem(503, detail, reason="not_ready",
                      headers={"Retry-After": str(service.settings.storage.retry_after_s)})
    return Health(status="ready", store=service.store.name)


async def _probe(request: Request) -> str | None:
    """``/readyz``'s probe: ``None`` when the store answers within :data:`PING_TIMEOUT_S`, else why
    not — the store's error for a request that may read, a short line for any other (logged
    once per change, :class:`Readiness`; ``zhizao_ingest_store_up`` set either way)."""
    service: IngestService = request.app.state.service
    try:
        await asyncio.wait_for(service.store.ping(), PING_TIMEOUT_S)
    except (StoreUnavailable, TimeoutError) as exc:
        service.metrics.store_up.set(0)
        why = str(exc) or f"no answer within {PING_TIMEOUT_S:g} s"
        problem = f"store {service.store.name} is not reachable: {why}"
        readiness(request).observe(service.store.name, problem)
        return problem if may_read(request) else "not ready (the reason is in ingest's log)"
    service.metrics.store_up.set(1)
    readiness(request).observe(service.store.name, None)
    return None


@router.get("/ping", status_code=204, response_class=Response, tags=["InfluxDB compatibility"])
@router.head("/ping", status_code=204, response_class=Response, tags=["InfluxDB compatibility"],
             operation_id="ping_head")
async def ping(verbose: bool = False) -> Response:
    """InfluxDB 1.x/2.x ``/ping``: 204 with ``X-Influxdb-Version`` and ``X-Influxdb-Build`` (``OSS``);
    ``?verbose=true``: 200 ``{"version": ...}`` (as influxd 1.x). The process is up; the store is
    not touched (``/health``, ``/readyz`` check it). No token needed, as in InfluxDB."""
    if verbose:
        return JSONResponse({"version": INFLUX_VERSION}, headers=_PING_HEADERS)
    return Response(status_code=204, headers=_PING_HEADERS)


@router.get("/health", tags=["InfluxDB compatibility"], responses={503: {"description": "store unreachable"}})
async def influx_health(request: Request) -> JSONResponse:
    """InfluxDB 2.x ``/health``: 200 ``{"name", "message", "status": "pass", "checks", "version"}``
    when the store answers (``/readyz``'s probe), else 503 with ``"status": "fail"`` and the reason
    in ``message`` (the store's error only for a read token, as ``/readyz``). No token needed."""
    detail = await _probe(request)
    doc: dict[str, Any] = {"name": "zhizao-ingest", "message": detail or "ready for queries and writes",
                           "status": "fail" if detail else "pass", "checks": [], "version": INFLUX_VERSION}
    if detail is None:
        return JSONResponse(doc)
    retry = str(request.app.state.settings.storage.retry_after_s)
    return JSONResponse(doc, status_code=503, headers={"Retry-After": retry})


@router.get("/ready", tags=["InfluxDB compatibility"])
async def influx_ready(request: Request) -> JSONResponse:
    """InfluxDB 2.x ``/ready``: ``{"status": "ready", "started": <RFC 3339>, "up": <Go duration>}``
    — the process serves (as influxd's, it does not probe the store: ``/health`` does). No token."""
    started = readiness(request).started
    return JSONResponse({"status": "ready", "started": started.wall, "up": _go_duration(started.elapsed())})


class Started:
    """When the app was created: wall-clock time (RFC 3339) and a monotonic clock for ``up``."""

    def __init__(self) -> None:
        self.wall = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0


def _go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration.String()`` writes it (``1h2m3.5s``, ``14.25s``)."""
    whole_min, sec = divmod(seconds, 60.0)
    hours, minutes = divmod(int(whole_min), 60)
    text = f"{sec:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


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
