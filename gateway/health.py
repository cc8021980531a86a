"""A tiny HTTP server for operations: ``/healthz``, ``/metrics`` and ``/fleet``.

- ``GET /healthz`` — JSON ``{"status": "ok"|"unhealthy", "problems": [...], ...figures}``; 200
  when healthy, 503 otherwise. Unhealthy when the broker connection has been down for longer
  than ``stall_after_s``, or when the oldest buffered row is older than ``stall_after_s`` and
  nothing reached ingest for as long (forwarding stalled: ingest down, token refused ...).
- ``GET /livez`` — 200 while the process serves requests (for liveness probes: restarting the
  gateway does not bring ingest back, so liveness must not follow ``/healthz``).
- ``GET /metrics`` — Prometheus text format (:mod:`gateway.metrics`).
- ``GET /fleet`` — JSON list of the agents this gateway knows (:mod:`gateway.fleet`).

Served by :func:`zhizao.opsserver.serve_ops`, like the agent's and the scoring service's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.metrics import registry_for
from zhizao.opsserver import Route, alive, health_answer, json_answer, serve_ops

if TYPE_CHECKING:
    from gateway.service import Gateway

log = logging.getLogger(__name__)


def health(gw: Gateway, now: float | None = None) -> tuple[bool, dict[str, Any]]:
    """``(healthy, document)`` of the gateway (see the module docstring)."""
    now = now or time.time()
    limit = gw.config.health.stall_after_s
    problems: list[str] = []
    s = gw.intake.stats
    down_since = gw.broker_down_since
    if not s.connected and down_since is not None and now - down_since > limit:
        problems.append(f"broker disconnected for {now - down_since:.0f} s")
    age = gw.buffer.stats.backlog_age(now)
    last_ok = max((f.stats.last_success or gw.started) for f in gw.forwarders)
    if age > limit and now - last_ok > limit:
        problems.append(f"forwarding stalled: oldest buffered row {age:.0f} s old, "
                        f"last delivery {now - last_ok:.0f} s ago")
    doc = {
        "status": "unhealthy" if problems else "ok", "problems": problems, "gateway": gw.config.id,
        "broker_connected": s.connected, "uplink_up": all(f.stats.up for f in gw.forwarders),
        "backlog_samples": gw.buffer.stats.backlog_samples, "backlog_age_s": round(age, 3),
        "committed_samples": gw.buffer.stats.committed,
        "backlog_batches": gw.buffer.stats.backlog_records,
        "sent_samples": sum(f.stats.sent_samples for f in gw.forwarders),
        "agents": gw.fleet.counts(),
    }
    return not problems, doc


@contextlib.asynccontextmanager
async def serve(gw: Gateway, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port."""
    registry = registry_for(gw)
    routes: dict[str, Route] = {
        "/healthz": lambda: health_answer(health(gw)),
        "/livez": alive,
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
        "/fleet": lambda: json_answer(gw.fleet.to_list()),
    }
    async with serve_ops(host, port, routes, name="gateway") as bound:
        yield bound
