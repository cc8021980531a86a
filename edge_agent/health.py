"""``/healthz`` and ``/metrics`` on a small local HTTP port (plain asyncio, no framework).

Health: the agent is unhealthy when any connector read nothing for ``stale_intervals`` ×
``interval_s`` (a stalled source or subscription), or when the buffer holds a backlog and the
uplink has not delivered anything for as long (a stalled uplink). ``GET /healthz`` answers 200 or
503 with a JSON body listing the problems.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import orjson

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.base import Connector
from edge_agent.forwarder import Forwarder

log = logging.getLogger(__name__)


class Health:
    """Evaluates the health rule of the module docstring."""

    def __init__(
        self,
        connectors: Sequence[Connector],
        buffer: SqliteBuffer,
        forwarder: Forwarder,
        *,
        interval_s: float,
        stale_intervals: int,
    ) -> None:
        self.connectors = connectors
        self.buffer = buffer
        self.forwarder = forwarder
        self.window = interval_s * stale_intervals
        self.started_mono = time.monotonic()
        self.started_wall = time.time()

    def check(self) -> tuple[bool, dict[str, Any]]:
        now_m, now_w = time.monotonic(), time.time()
        problems: list[str] = []
        for c in self.connectors:
            age = now_m - (c.stats.last_data if c.stats.last_data is not None else self.started_mono)
            if age > self.window:
                state = "connected" if c.stats.connected else "not connected"
                problems.append(f"connector {c.name} ({state}): no data for {age:.0f} s")
        backlog = self.buffer.stats.backlog_samples
        if backlog:
            last = self.forwarder.stats.last_success or self.started_wall
            if now_w - last > self.window:
                problems.append(
                    f"uplink: {backlog} samples waiting, nothing delivered for {now_w - last:.0f} s"
                )
        doc = {
            "healthy": not problems,
            "problems": problems,
            "backlog_samples": backlog,
            "backlog_age_s": round(self.buffer.stats.backlog_age(), 3),
        }
        return not problems, doc


class HealthServer:
    """Serves ``/healthz`` and ``/metrics``; ``port`` 0 picks a free port (see :attr:`port`)."""

    def __init__(self, health: Health, metrics: Callable[[], bytes], host: str, port: int) -> None:
        self.health = health
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("health and metrics on http://%s:%d/healthz and /metrics", self.host, self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = request.split(b" ", 2)
            path = parts[1].split(b"?")[0] if len(parts) > 1 else b""
            if parts[0] != b"GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == b"/healthz":
                ok, doc = self.health.check()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "application/json", orjson.dumps(doc)
            elif path == b"/metrics":
                status, ctype, body = "200 OK", "text/plain; version=0.0.4; charset=utf-8", self.metrics()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /healthz or /metrics\n"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
