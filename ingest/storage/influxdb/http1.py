"""A small keep-alive HTTP/1.1 client for the one hot request of the InfluxDB store: ``POST /write``.

Why not httpx here: measured on this project's 2-core machines, ``httpx`` (and ``httpcore``
below it) spend about 1 ms of CPU per 1,000-point ``/write`` body — more than decoding the
batch — while writing the same request on a plain asyncio stream costs about 0.15 ms
(``bench/ingest.py`` figures in ``ingest/README.md``). Every other request of the store
(queries, ping, dedup load) still goes through httpx.

Contract of :class:`WritePool`: :meth:`WritePool.post` sends one request with a
``Content-Length`` body and returns ``(status, body)`` of the answer, reading bodies framed by
``Content-Length``, ``chunked`` or connection close. Any transport or protocol problem raises
``StoreUnavailable`` naming it (the connection is dropped, never reused). A failure on a *reused*
keep-alive connection before any answer byte arrived is retried once on a fresh connection: the
server may have closed an idle connection, and an InfluxDB write is idempotent (the same points
overwrite themselves), so a resend can never store anything twice.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlencode, urlsplit

from zhizao.errors import StoreUnavailable

_MAX_HEAD = 64 * 1024
_MAX_BODY = 4 * 1024 * 1024


class _Conn:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        self.writer.close()


class _NoAnswer(Exception):
    """Internal: the connection failed before any byte of the answer."""


class WritePool:
    """Keep-alive connections to one server (``base_url``: ``http(s)://host[:port][/prefix]``)."""

    def __init__(self, base_url: str, *, headers: dict[str, str], tls: ssl.SSLContext | None,
                 timeout_s: float, max_idle: int = 8) -> None:
        """``tls``: the context for an ``https`` URL (see :func:`tls_context`)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB url {base_url!r} must be http(s)://host[:port]")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.ssl = (tls or tls_context(verify=True, ca_file=None)) if parts.scheme == "https" else None
        host_header = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        if parts.port is not None:
            host_header += f":{parts.port}"
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {
            "Host": host_header, "User-Agent": "zhizao-ingest", "Content-Type": "text/plain; charset=utf-8",
            **headers}.items())
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: list[_Conn] = []

    async def post(self, path: str, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """``POST <prefix><path>?<params>`` with ``body``; see the module docstring."""
        request = (f"POST {self.prefix}{path}?{urlencode(params)} HTTP/1.1\r\n{self._head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._take()
                try:
                    return await self._exchange(conn, request, body)
                except _NoAnswer:
                    if not conn.reused:
                        raise
                conn = await self._take(fresh=True)
                return await self._exchange(conn, request, body)
        except TimeoutError:
            raise StoreUnavailable(f"InfluxDB write got no answer within {self.timeout_s} s") from None
        except _NoAnswer as exc:
            raise StoreUnavailable(f"InfluxDB write failed: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise StoreUnavailable(f"InfluxDB write failed: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def _take(self, *, fresh: bool = False) -> _Conn:
        if not fresh and self._idle:
            conn = self._idle.pop()
            conn.reused = True
            return conn
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                                       limit=_MAX_HEAD)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, request: bytes, body: bytes) -> tuple[int, bytes]:
        """One request/answer on ``conn``; the connection goes back to the pool only when clean."""
        ok = False
        try:
            try:
                conn.writer.write(request)
                conn.writer.write(body)
                await conn.writer.drain()
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError) as exc:
                raise _NoAnswer(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
            except asyncio.LimitOverrunError:
                raise StoreUnavailable("InfluxDB answered with oversized headers") from None
            status, headers = _parse_head(head)
            data = await self._body(conn.reader, status, headers)
            ok = headers.get("connection", "").lower() != "close"
            return status, data
        except asyncio.IncompleteReadError:
            raise StoreUnavailable("InfluxDB closed the connection in the middle of its answer") from None
        finally:
            if ok and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                conn.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, status: int, headers: dict[str, str]) -> bytes:
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise StoreUnavailable(f"InfluxDB sent a bad chunk size {size_line[:40]!r}") from None
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return bytes(out)
                if len(out) + size > _MAX_BODY:
                    raise StoreUnavailable("InfluxDB answer is too large")
                out += await reader.readexactly(size + 2)
                del out[-2:]
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > _MAX_BODY:
                raise StoreUnavailable(f"InfluxDB sent a bad Content-Length {length[:40]!r}")
            return await reader.readexactly(int(length))
        headers["connection"] = "close"  # body framed by the end of the connection
        return await reader.read(_MAX_BODY)


def tls_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The client TLS context: system CAs, or ``ca_file``'s; no checks at all when not ``verify``."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise StoreUnavailable(f"InfluxDB answered something that is not HTTP/1.x: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
