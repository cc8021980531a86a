"""Operations endpoints of the scoring service (plain asyncio, one request per connection).

The contract (:mod:`.service`'s module docstring has the reasons):

- ``GET /livez`` — liveness, for a Kubernetes ``livenessProbe``: 200 ``alive`` while the process
  serves requests and its loop turns; 503 ``wedged`` only when no round and no machine step
  ended for ``health.wedged_after_s``. Never 503 for an outage or a failing machine — a restart
  fixes neither.
- ``GET /readyz`` — readiness, for a ``readinessProbe``, a load balancer or a monitor: 200
  ``ready`` when rounds succeed and every machine with a promoted model is scored; 503 with
  ``status`` ``degraded`` (machines failing, each named with its status, problem and since when
  in ``failing``), ``unhealthy`` (no successful round for ``health.stall_after_s``) or
  ``starting`` (no successful round yet).
- ``GET /healthz`` — the same status code as ``/readyz``, with the whole document: rounds, rows
  scored, events, failures by kind, and per machine its status (``ok``, ``no_model``,
  ``model_mismatch``, ``missing_signals``, ``registry``, ``state``, or a failing step's
  ``store_unavailable``, ``rejected``, ``internal`` until a step succeeds), the problem in words
  and since when, the model version, cursor, lag, pending events, held signals and data stamped
  ahead of the clock.
- ``GET /metrics`` — Prometheus text format (:mod:`.metrics` and the event emitter's counters).

Served by :func:`zhizao.opsserver.serve_ops`, like the agent's and the gateway's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from analytics.scoring.service.service import ScoringService
from zhizao.opsserver import Route, health_answer, serve_ops

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_health(service: ScoringService, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port."""
    routes: dict[str, Route] = {
        "/healthz": lambda: health_answer(service.health()),
        "/readyz": lambda: health_answer(service.readiness()),
        "/livez": lambda: health_answer(service.liveness()),
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)),
    }
    async with serve_ops(host, port, routes, name="scoring service") as bound:
        yield bound
