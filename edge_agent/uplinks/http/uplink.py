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

One ``HttpUplink`` holds one ``httpx.AsyncClient`` (connection reuse); ``send`` is safe to call
concurrently.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from edge_agent.buffer.encoded import EncodedBatch
from edge_agent.uplinks.http.config import HttpUplinkConfig
from zhizao import wire
from zhizao.errors import PartialWrite, Rejected, Unavailable
from zhizao.model import Batch

log = logging.getLogger(__name__)
PATH = "/api/v1/batches"


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


class HttpUplink:
    """Sends batches to ingest over HTTP (see the module docstring)."""

    name = "http"

    def __init__(
        self, config: HttpUplinkConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.endpoint = config.url.rstrip("/") + PATH
        self.last_latency_s = 0.0
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        headers = {"Content-Type": wire.CONTENT_TYPE, "User-Agent": "zhizao-edge-agent"}
        token = self.config.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.config.gzip:
            headers["Content-Encoding"] = "gzip"
        verify: bool | str = (
            str(self.config.verify) if isinstance(self.config.verify, Path) else self.config.verify
        )
        cert = (
            (str(self.config.client_cert), str(self.config.client_key))
            if self.config.client_cert and self.config.client_key
            else None
        )
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=self.config.timeout_s,
            verify=verify,
            cert=cert,
            transport=self._transport,
        )
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
        await self._post(wire.encode_batch(batch, compress=self.config.gzip), len(batch))

    async def send_encoded(self, batch: EncodedBatch) -> None:
        """Like :meth:`send` for a batch as the buffer stores it (no per-sample encoding)."""
        body = await asyncio.to_thread(batch.body, compress=self.config.gzip)  # zlib releases the GIL
        await self._post(body, len(batch))

    async def _post(self, body: bytes, n: int) -> None:
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        started = time.perf_counter()
        try:
            resp = await self._client.post(self.endpoint, content=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"ingest at {self.endpoint} unreachable: {type(exc).__name__}: {exc}") from exc
        self.last_latency_s = time.perf_counter() - started
        self._check(resp, n)

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
            log.error("ingest refused the token (%d): %s; data waits in the buffer", status, message)
            raise Unavailable(f"ingest answered {status}: {message}", retry_after=30.0)
        rejected = _rejections(doc)
        if status in (400, 422) and rejected:
            accepted = doc.get("accepted") if isinstance(doc, dict) else None
            raise PartialWrite(accepted if isinstance(accepted, int) else 0, rejected)
        raise Rejected(f"ingest answered {status}: {message}")


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
