"""The tiny operations HTTP server every long-running zhizao process has (agent, gateway, scoring
service): ``/healthz``, ``/livez``, ``/metrics`` and whatever read-only routes it adds.

Plain asyncio streams, one request per connection (``Connection: close``): no web framework for a
handful of read-only endpoints polled by probes and Prometheus. Contract of :func:`serve_ops`:
``GET <path>`` calls ``routes[path]()`` and sends its ``(status, content type, body)``; another
method answers 405, an unknown path 404 naming the known ones; a client that sends no complete
request head within 5 s, or hangs up, is dropped without an answer. A route that raises is logged
and answered 500, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import orjson

from zhizao.errors import ZhizaoError

log = logging.getLogger(__name__)

Answer = tuple[int, str, bytes]
"""``(status, content type, body)`` of one answer."""
Route = Callable[[], Answer]

JSON: Final = "application/json"
_REASONS: Final = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                   503: "Service Unavailable"}
_MAX_HEAD: Final = 16 * 1024


def json_answer(doc: Any, status: int = 200) -> Answer:
    """A JSON answer."""
    return status, JSON, orjson.dumps(doc)


def health_answer(check: tuple[bool, Any]) -> Answer:
    """``(healthy, document)`` as a health probe wants it: 200 when healthy, 503 otherwise."""
    ok, doc = check
    return json_answer(doc, 200 if ok else 503)


def alive() -> Answer:
    """``/livez``: the process serves requests (liveness must not follow ``/healthz``: restarting a
    process does not bring back the broker or ingest it waits for)."""
    return json_answer({"status": "alive"})


def _answer(routes: Mapping[str, Route], method: bytes, path: str) -> Answer:
    if method != b"GET":
        return json_answer({"detail": "only GET is served"}, 405)
    route = routes.get(path)
    if route is None:
        return json_answer({"detail": f"not found; try {', '.join(sorted(routes))}"}, 404)
    try:
        return route()
    except Exception as exc:  # a broken route must not take the probe server down
        log.error("operations endpoint %s failed", path, exc_info=exc)
        return json_answer({"detail": f"{path} failed: {type(exc).__name__}"}, 500)


@contextlib.asynccontextmanager
async def serve_ops(host: str, port: int, routes: Mapping[str, Route], *, name: str) -> AsyncIterator[int]:
    """Serve ``routes`` while the context is open; yields the bound port (``port`` 0 picks one).
    An address that cannot be bound (in use) is a :class:`~zhizao.errors.ZhizaoError` naming it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?")[0].decode("latin-1") if len(parts) > 1 else ""
            status, ctype, body = _answer(routes, parts[0], path)
            writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            log.debug("%s: operations request dropped: %s", name, exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port, limit=_MAX_HEAD)
    except OSError as exc:  # a port in use, an address not of this machine: one line, not a traceback
        raise ZhizaoError(f"{name}: cannot serve http://{host}:{port}: {exc.strerror or exc} "
                          "(another process on that port? set another health port)") from exc
    bound = int(server.sockets[0].getsockname()[1])
    log.info("%s: %s on http://%s:%d", name, ", ".join(sorted(routes)), host, bound)
    try:
        yield bound
    finally:
        server.close()
        await server.wait_closed()
