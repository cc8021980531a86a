"""Operations endpoints of the scoring service (plain asyncio, one request per connection):

- ``GET /healthz`` — JSON: status, rounds, rows scored, events, failures by kind, and per machine
  its status (``ok``, ``no_model``, ``model_mismatch``, ``missing_signals``, ``state`` ...), the
  problem in words, the model version, cursor and lag. 200 when healthy, 503 when no round has
  succeeded for ``health.stall_after_s`` (store or ingest unreachable that long).
- ``GET /livez`` — 200 while the process serves requests.
- ``GET /metrics`` — Prometheus text format (:mod:`.metrics` and the event emitter's counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from analytics.scoring.service.service import ScoringService

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve_health(service: ScoringService, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints while the context is open; yields the bound port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            if path == "/healthz":
                ok, doc = service.health()
                status, ctype, body = (200 if ok else 503), "application/json", orjson.dumps(doc)
            elif path == "/livez":
                status, ctype, body = 200, "application/json", b'{"status": "alive"}'
            elif path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            else:
                status, ctype, body = 404, "application/json", b'{"detail": "not found"}'
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError) as exc:
            log.debug("health request failed: %s", exc)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound = int(server.sockets[0].getsockname()[1])
    log.info("scoring service health on http://%s:%d/healthz, metrics on /metrics", host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
