"""HTTP uplink: POST a batch in zhizao's wire format to ingest, translate the answer.

Request: ``POST <url>/api/v1/batches``, body :func:`zhizao.wire.encode_batch` (gzip when
configured, with ``Content-Encoding: gzip``), ``Authorization: Bearer <token>`` when a token is
set. Answers, translated per :mod:`edge_agent.uplinks.base`:

- 2xx: acknowledged. A JSON body ``{"accepted": n, "rejected": [{"index": i, "reason": r}, ...]}``
  with rejections (also ``rejected`` as a count plus ``rejections``/``errors`` as that list, or
  ``rejected`` as ``{"<index>": reason}``) raises :class:`~zhizao.errors.PartialWrite`.
- 400/422 whose body lists per-sample rejections: :class:`~zhizao.errors.PartialWrite` too.
- 408, 429, 5xx and transport errors: :class:`~zhizao.errors.Unavailable` with ``Retry-After``
  (seconds or an HTTP date) when given. 401/403 are ``Unavailable`` as well (a token problem is
  fixed by a person; the data waits in the buffer), logged as errors.
- Any other 4xx: :class:`~zhizao.errors.Rejected` with the server's message.

Bulk (``bulk = true``, the default): ``send_bulk(batches)`` POSTs several stored batches in ONE
request to ``<url>/api/v1/batches/bulk`` — ``Content-Type: application/x-ndjson``, one wire-format
document per line, the whole body gzip when configured — and returns one outcome per batch, in
order: ``None`` (stored, or a duplicate of a stored one), :class:`~zhizao.errors.PartialWrite`
(some samples refused, by index), :class:`~zhizao.errors.Rejected` (that line refused for good,
e.g. an invalid envelope) or :class:`~zhizao.errors.Unavailable` (that line only: resend it).
Whole-request answers: 408/429/5xx/transport errors raise ``Unavailable`` (resend all: the
ones already stored come back as duplicates); 401/403 as for ``send``; 413 splits the request
in halves (a single batch too large is ``Rejected``); 404/405 (an ingest without the bulk
endpoint) switch this uplink to one ``POST /api/v1/batches`` per batch, logged once; any other
4xx sends this request's batches one by one, so each gets its own verdict.

One ``HttpUplink`` holds one ``httpx.AsyncClient`` (connection reuse); ``send``, ``send_encoded``
and ``send_bulk`` are safe to call concurrently.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import orjson

from edge_agent.buffer.encoded import BulkLimits, EncodedBatch
from edge_agent.uplinks.http.config import HttpUplinkConfig
from zhizao import wire
from zhizao.errors import PartialWrite, Rejected, SecurityError, Unavailable
from zhizao.model import Batch

log = logging.getLogger(__name__)
PATH = "/api/v1/batches"
BULK_PATH = "/api/v1/batches/bulk"
NDJSON = "application/x-ndjson"
Outcome = PartialWrite | Rejected | Unavailable | None
"""One batch's outcome in a bulk request (see the module docstring)."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def tls_context(config: HttpUplinkConfig) -> ssl.SSLContext | bool:
    """What httpx gets as ``verify``: ``True``/``False`` as configured, or a context with the
    configured CA bundle (file or folder) and client certificate.

    Raises :class:`~zhizao.errors.SecurityError` naming the file that cannot be loaded (gone
    since the config was validated, not PEM, key not matching): never a weaker setting.
    """
    verify, cert, key = config.verify, config.client_cert, config.client_key
    if not isinstance(verify, Path) and cert is None:
        return verify  # httpx's own: certifi's CAs (or SSL_CERT_FILE/SSL_CERT_DIR), or no check
    if isinstance(verify, Path):
        try:
            ctx = (ssl.create_default_context(capath=str(verify)) if verify.is_dir()
                   else ssl.create_default_context(cafile=str(verify)))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SecurityError(f"HTTP uplink: cannot load the CA bundle verify = {verify}: "
                                f"{_reason(exc)}") from exc
    else:
        ctx = httpx.create_ssl_context(verify=verify)
    if cert is not None:
        try:
            ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ValueError) as exc:
            raise SecurityError(f"HTTP uplink: cannot load the client certificate client_cert = {cert}, "
                                f"client_key = {key}: {_reason(exc)}") from exc
    return ctx


def _reason(exc: Exception) -> str:
    return str(exc.strerror) if isinstance(exc, OSError) and exc.strerror else str(exc)


class HttpUplink:
    """Sends batches to ingest over HTTP (see the module docstring)."""

    name = "http"

    def __init__(
        self, config: HttpUplinkConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.endpoint = config.url.rstrip("/") + PATH
        self.bulk_endpoint = config.url.rstrip("/") + BULK_PATH
        self.bulk: BulkLimits | None = config.bulk_limits()
        """What one bulk request may hold; ``None`` when bulk is off (or ingest has no bulk endpoint)."""
        self.last_latency_s = 0.0
        self.refused: Counter[str] = Counter()  # "HTTP 401"/"HTTP 403" answers: token problems
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        """Open the connection pool; ``SecurityError`` naming the file when the token file, the
        CA bundle or the client certificate cannot be used."""
        headers = {"Content-Type": wire.CONTENT_TYPE, "User-Agent": "zhizao-edge-agent"}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.config.gzip:
            headers["Content-Encoding"] = "gzip"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=self.config.timeout_s,
            verify=tls_context(self.config),
            transport=self._transport,
        )
        anyio.Event()  # httpcore loads anyio's asyncio backend at the first request (~40 ms): now instead
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, batch: Batch) -> None:
        """POST ``batch``; returns when acknowledged, else raises (see the module docstring)."""
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        body = wire.encode_batch(batch, compress=self.config.gzip, version=self.config.wire_version)
        await self._post(body, len(batch))

    async def send_encoded(self, batch: EncodedBatch) -> None:
        """Like :meth:`send` for a batch as the buffer stores it (no per-sample encoding)."""
        body = await asyncio.to_thread(batch.body, compress=self.config.gzip,  # zlib releases the GIL
                                       version=self.config.wire_version)
        await self._post(body, len(batch))

    async def send_bulk(self, batches: Sequence[EncodedBatch]) -> list[Outcome]:
        """POST ``batches`` in one bulk request; one outcome per batch (see the module docstring)."""
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        if self.bulk is None:
            return await self._one_by_one(batches)
        raw = b"\n".join(b.line(self.config.wire_version) for b in batches)
        body = await asyncio.to_thread(_gzip, raw) if self.config.gzip else raw
        resp = await self._request(self.bulk_endpoint, body, {"Content-Type": NDJSON})
        status = resp.status_code
        if 200 <= status < 300:
            return self._bulk_outcomes(resp, batches)
        message = _problem(_json(resp), resp)
        if status in (404, 405):
            log.warning("ingest at %s has no bulk endpoint (%d): sending one batch per request",
                        self.bulk_endpoint, status)
            self.bulk = None
            return await self._one_by_one(batches)
        if status == 413 and len(batches) > 1:
            half = len(batches) // 2
            log.info("ingest found a bulk request of %d batches too large (%s); splitting it", len(batches),
                     message)
            return [*await self.send_bulk(batches[:half]), *await self.send_bulk(batches[half:])]
        if status == 413:  # a single batch too large: refused for good, as on /api/v1/batches
            return [Rejected(f"ingest answered 413: {message}")]
        if status in (401, 403, 408, 429) or status >= 500:
            self._check(resp, sum(len(b) for b in batches))  # raises Unavailable
        log.error("ingest refused a bulk request (%d: %s); sending its %d batches one by one",
                  status, message, len(batches))
        return await self._one_by_one(batches)

    async def _one_by_one(self, batches: Sequence[EncodedBatch]) -> list[Outcome]:
        out: list[Outcome] = []
        for b in batches:
            try:
                await self.send_encoded(b)
                out.append(None)
            except (PartialWrite, Rejected) as exc:
                out.append(exc)
        return out

    def _bulk_outcomes(self, resp: httpx.Response, batches: Sequence[EncodedBatch]) -> list[Outcome]:
        doc = _json(resp)
        lines = doc.get("batches") if isinstance(doc, dict) else None
        if not isinstance(lines, list) or len(lines) != len(batches):
            # Stored or not, we cannot tell which: resending is safe (ingest deduplicates).
            raise Unavailable(f"ingest's bulk answer does not list the {len(batches)} batches sent")
        out: list[Outcome] = []
        for batch, line in zip(batches, lines, strict=True):
            if not isinstance(line, dict):
                raise Unavailable("ingest's bulk answer has a malformed entry")
            error = line.get("error")
            if isinstance(error, dict):
                status = error.get("status")
                detail = (f"ingest refused batch {batch.producer}/{batch.batch_id} ({status}): "
                          f"{error.get('detail')}")
                retry = isinstance(status, int) and (status in (408, 429) or status >= 500)
                out.append(Unavailable(detail) if retry else Rejected(detail))
                continue
            if (line.get("producer"), line.get("batch_id")) != (batch.producer, batch.batch_id):
                raise Unavailable("ingest's bulk answer lists the batches in another order")
            rejected = _rejections(line)
            if rejected:
                accepted = line.get("accepted")
                out.append(PartialWrite(accepted if isinstance(accepted, int) else len(batch) - len(rejected),
                                        rejected))
            else:
                out.append(None)
        return out

    async def _request(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        started = time.perf_counter()
        try:
            resp = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"ingest at {url} unreachable: {type(exc).__name__}: {exc}") from exc
        self.last_latency_s = time.perf_counter() - started
        return resp

    async def _post(self, body: bytes, n: int) -> None:
        self._check(await self._request(self.endpoint, body), n)

    def _check(self, resp: httpx.Response, n: int) -> None:
        status = resp.status_code
        doc = _json(resp)
        if 200 <= status < 300:
            rejected = _rejections(doc)
            if rejected:
                accepted = doc.get("accepted") if isinstance(doc, dict) else None
                raise PartialWrite(accepted if isinstance(accepted, int) else n - len(rejected), rejected)
            return
        message = _problem(doc, resp)
        if status in (408, 429) or status >= 500:
            raise Unavailable(
                f"ingest answered {status}: {message}", parse_retry_after(resp.headers.get("Retry-After"))
            )
        if status in (401, 403):
            self.refused[f"HTTP {status}"] += 1
            log.error("ingest refused the token (%d): %s; data waits in the buffer", status, message)
            raise Unavailable(f"ingest answered {status}: {message}", retry_after=30.0)
        rejected = _rejections(doc)
        if status in (400, 422) and rejected:
            accepted = doc.get("accepted") if isinstance(doc, dict) else None
            raise PartialWrite(accepted if isinstance(accepted, int) else 0, rejected)
        raise Rejected(f"ingest answered {status}: {message}")


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _json(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None


def _rejections(doc: Any) -> dict[int, str]:
    if not isinstance(doc, dict):
        return {}
    for key in ("rejected", "rejections", "errors"):
        items = doc.get(key)
        if isinstance(items, list):
            out: dict[int, str] = {}
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("index"), int):
                    out[item["index"]] = str(item.get("reason") or item.get("detail") or "rejected")
            if out:
                return out
        if isinstance(items, dict):
            return {int(k): str(v) for k, v in items.items() if str(k).isdigit()}
    return {}


def _problem(doc: Any, resp: httpx.Response) -> str:
    if isinstance(doc, dict):
        for key in ("detail", "title", "message"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
    return resp.text[:200] or resp.reason_phrase
