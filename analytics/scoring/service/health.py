"""Operations endpoints of the scoring service (plain asyncio, one request per connection):

- ``GET /healthz`` — JSON: status, rounds, rows scored, events, failures by kind, and per machine
  its status (``ok``, ``no_model``, ``model_mismatch``, ``missing_signals``, ``registry``, ``state``,
  or a failing step's ``store_unavailable``, ``rejected``, ``internal`` until a step succeeds), the
  problem in words, the model version, cursor and lag. 200 when healthy, 503 when no round has
  succeeded for ``health.stall_after_s`` (store or ingest unreachable that long).
- ``GET /livez`` — 200 while the process serves requests.
- ``GET /metrics`` — Prometheus text format (:mod:`.metrics` and the event emitter's counters).

Served by :func:`zhizao.opsserver.serve_ops`, like the agent's and the gateway's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from analytics.scoring.service.service import ScoringService
from zhizao.opsserver import Route, alive, health_answer, serve_ops

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_health(service: ScoringService, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port."""
    routes: dict[str, Route] = {
        "/healthz": lambda: health_answer(service.health()),
        "/livez": alive,
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)),
    }
    async with serve_ops(host, port, routes, name="scoring service") as bound:
        yield bound
