"""Ingest in this process: the FastAPI app on uvicorn, as a task of the running event loop.

``async with IngestServer(settings, plant) as ingest`` serves ``create_app(settings)`` with the
KPI API (``analytics.kpi.api``) and the web dashboard (``dashboards.web``) mounted, and returns
once the store is open and the port accepts requests. The listening socket is bound here, before
uvicorn starts (it is handed the socket): a port in use is a :class:`~zhizao.errors.ConnectionLost`
naming the address, at once — uvicorn itself would log its error and raise ``SystemExit`` out
of the event loop. ``ingest.store`` is the app's store (for
the in-process analytics loops, which run in the same loop); ``ingest.url`` its base URL. On exit
uvicorn finishes the requests in flight, the lifespan closes the store (DuckDB checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from ingest.settings import Settings
from ingest.storage.base import Store
from zhizao.errors import ConnectionLost
from zhizao.plant import PlantConfig

log = logging.getLogger(__name__)


def build_app(settings: Settings, plant: PlantConfig) -> FastAPI:
    """Ingest's app with the KPI router (read scope) and the web dashboard mounted."""
    from analytics.kpi.api import create_router
    from analytics.kpi.config import KpiConfig
    from dashboards.web import WebSettings, web_router
    from ingest.api.deps import get_store, require
    from ingest.app import create_app
    from ingest.auth import Scope

    app = create_app(settings)
    app.include_router(create_router(plant, KpiConfig(), store_dep=get_store, read_dep=require(Scope.READ)))
    app.include_router(web_router(WebSettings(refresh_s=2.0, kpi_refresh_s=5.0)))
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``SO_REUSEADDR``, as uvicorn binds); ``OSError`` when
    the address is taken or not this machine's."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: SIGINT/SIGTERM belong to the command running the whole
    stack, which stops ingest last (after the agent drained into it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IngestServer:
    """See the module docstring."""

    def __init__(self, settings: Settings, plant: PlantConfig) -> None:
        self.settings = settings
        self.app = build_app(settings, plant)
        self.url = f"http://{settings.host}:{settings.port}"
        config = uvicorn.Config(self.app, host=settings.host, port=settings.port, log_level="warning",
                                lifespan="on", access_log=False)
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        """The app's open store (valid between enter and exit)."""
        store: Store = self.app.state.service.store
        return store

    async def __aenter__(self) -> Self:
        try:
            sock = listening_socket(self.settings.host, self.settings.port)
        except OSError as exc:
            raise ConnectionLost(f"ingest cannot listen on {self.url}: {exc.strerror or exc}") from exc
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="zhizao-ingest")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self._stop()
                raise ConnectionLost(f"ingest did not start on {self.url} (port in use?)")
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await asyncio.wait_for(asyncio.shield(self._task), 30)
        self._task = None
