"""``/healthz``, ``/livez`` and ``/metrics`` on a small local HTTP port (:mod:`zhizao.opsserver`).

Health: the agent is unhealthy when any connector read nothing for ``stale_intervals`` ×
``interval_s`` (a stalled source or subscription) — or for its own window in
``health.connector_stale_after_s``, where ``0`` means never (a source that publishes only on
change) — or when the buffer holds a backlog and the uplink has not delivered anything for
``stale_intervals`` × ``interval_s`` (a stalled uplink). ``GET /healthz`` answers 200 or 503 with
a JSON body listing the problems.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.base import Connector
from edge_agent.forwarder import Forwarder
from zhizao.opsserver import Route, alive, health_answer, serve_ops

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
        connector_stale_after_s: Mapping[str, float] | None = None,
    ) -> None:
        self.connectors = connectors
        self.buffer = buffer
        self.forwarder = forwarder
        self.window = interval_s * stale_intervals
        self.connector_windows = dict(connector_stale_after_s or {})
        """Per connector name: its own no-data window (``0``: not checked)."""
        self.started_mono = time.monotonic()
        self.started_wall = time.time()

    def check(self) -> tuple[bool, dict[str, Any]]:
        now_m, now_w = time.monotonic(), time.time()
        problems: list[str] = []
        for c in self.connectors:
            window = self.connector_windows.get(c.name, self.window)
            if window <= 0:
                continue
            age = now_m - (c.stats.last_data if c.stats.last_data is not None else self.started_mono)
            if age > window:
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
    """Serves ``/healthz``, ``/livez`` and ``/metrics`` (:func:`zhizao.opsserver.serve_ops`);
    ``port`` 0 picks a free port (see :attr:`port`)."""

    def __init__(self, health: Health, metrics: Callable[[], bytes], host: str, port: int) -> None:
        self.health = health
        self.metrics = metrics
        self.host = host
        self.port = port
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        routes: dict[str, Route] = {
            "/healthz": lambda: health_answer(self.health.check()),
            "/livez": alive,
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", self.metrics()),
        }
        self.port = await self._stack.enter_async_context(
            serve_ops(self.host, self.port, routes, name="agent"))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()
