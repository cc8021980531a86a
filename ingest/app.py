"""The app factory: ``create_app(settings) -> FastAPI``.

The store is opened in the app's lifespan (so the app must run under a server or
``TestClient``/``LifespanManager``); pass ``store=`` to share an already-open store (tests).
Background tasks: hourly retention (``storage.retention_days``) and dedup pruning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.api import batches, events, health, lineproto, series
from ingest.auth import TokenFile
from ingest.metrics import Metrics
from ingest.problems import install, problem_of, problem_response
from ingest.service import IngestService
from ingest.settings import Settings
from ingest.storage.base import Store
from ingest.storage.registry import open_store
from zhizao import __version__
from zhizao.errors import ConfigError, StoreUnavailable

log = logging.getLogger("ingest")


class LatencyMiddleware:
    """Pure ASGI middleware observing request latency by route template and status class."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(path, f"{status[0] // 100}xx").observe(time.perf_counter() - start)


class WriteFront:
    """Outermost middleware serving the write routes — ``POST /api/v1/batches`` and
    ``POST /api/v1/batches/bulk``, ingest's hot path — with the very handlers FastAPI routes and
    documents, but without FastAPI's per-request routing, dependency and exception layers.
    Every other request, and every other method on those paths, goes to ``app`` unchanged.

    Contract: the same answers as through ``app`` — errors become problem+json through
    :func:`ingest.problems.problem_of`, latency is observed under the route's template.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, retry_after_s: int) -> None:
        self.app = app
        self.metrics = metrics
        self.retry_after_s = retry_after_s
        self.routes: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/api/v1/batches": batches.post_batch, "/api/v1/batches/bulk": batches.post_bulk}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" \
            else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error is answered, as FastAPI's handlers would
            problem = problem_of(exc, self.retry_after_s, f"POST {scope['path']}")
            response = problem_response(problem, scope["path"])
        await response(scope, receive, send)
        self.metrics.latency.labels(scope["path"], f"{response.status_code // 100}xx").observe(
            time.perf_counter() - start)


async def _housekeeping(service: IngestService) -> None:
    """Hourly: retention by age and dedup-record pruning. Failures are logged and retried next hour."""
    settings = service.settings
    while True:
        try:
            if settings.storage.retention_days is not None:
                cutoff = datetime.now(UTC) - timedelta(days=settings.storage.retention_days)
                await service.store.delete_before(cutoff)
            await service.store.prune_dedup(timedelta(days=settings.dedup.max_age_days),
                                            settings.dedup.max_entries)
        except StoreUnavailable as exc:
            service.metrics.store_errors.labels("housekeeping").inc()
            log.warning("housekeeping failed, retrying in an hour: %s", exc)
        await asyncio.sleep(3600)


def warn_unbound_tokens(tokens: TokenFile) -> None:
    """One WARNING per active write token from before producer bindings (it writes as any producer
    and posts events of any source)."""
    try:
        unbound = tokens.unbound()
    except ConfigError as exc:  # answered per request (500) as before; say it at start too
        log.error("%s", exc)
        return
    for r in unbound:
        log.warning("token %s (%s) in %s is not bound to producers (created before bindings): it may "
                    "write batches as ANY producer and post events of any source, as a site gateway's "
                    "forwarder token does. Re-create it bound: issue one with 'zhizao ingest token "
                    "create --name %s-2 --producer %s' (an agent: its agent id; an analytics service: "
                    "its producer, e.g. zhizao-scoring, see auth.event_producers; a site gateway: "
                    "--forwarder instead), give it to the client, then 'zhizao ingest token revoke %s'",
                    r.id, r.name, tokens.path, r.name, r.name, r.id)


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Build the ingest app. ``store`` (already entered) overrides ``settings.storage``;
    ``routers`` are mounted after ingest's own (they may use ``ingest.api.deps``)."""
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.auth.enabled:
            log.warning("AUTHENTICATION IS DISABLED (auth.enabled = false): anyone who can reach this "
                        "port can write and read data. Use this for the one-box demo only.")
        else:
            warn_unbound_tokens(app.state.tokens)
        async with contextlib.AsyncExitStack() as stack:
            active = store
            if active is None:
                active = await stack.enter_async_context(open_store(settings.storage, settings.dedup))
            service = IngestService(settings, active, metrics)
            app.state.service = service
            task = asyncio.create_task(_housekeeping(service))
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="zhizao ingest", version=__version__, lifespan=lifespan,
                  description="Authenticated, idempotent telemetry ingest (zhizao wire format and "
                              "InfluxDB line protocol) and the read API over the store.")
    app.state.tokens = TokenFile(Path(settings.auth.tokens_file))
    app.state.settings = settings
    app.state.readiness = health.Readiness()
    install(app, settings.storage.retry_after_s)
    for module in (batches, lineproto, series, events, health):
        app.include_router(module.router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.add_middleware(WriteFront, metrics=metrics, retry_after_s=settings.storage.retry_after_s)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(batches.batch_schemas())
            doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            doc["security"] = [{"bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
