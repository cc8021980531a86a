"""HTTP sinks: ingest's ``POST /api/v1/events`` and generic webhooks (httpx)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import httpx
import orjson

from analytics.events.signature import SIGNATURE_HEADER, sign_webhook
from analytics.events.sinks.base import event_json
from zhizao.errors import Rejected, Unavailable
from zhizao.events import Event


class _HttpSink:
    name = "http"

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _body(self, events: Sequence[Event]) -> Any:
        return [event_json(e) for e in events]

    async def send(self, events: Sequence[Event]) -> None:
        if not events:
            return
        if self._client is None:
            raise RuntimeError(f"{self.name} sink used outside 'async with'")
        body = orjson.dumps(self._body(events))
        try:
            resp = await self._client.post(self.url, content=body, headers=self._sign(body))
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self.name} sink {self.url}: {exc!r}") from exc
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            retry = resp.headers.get("Retry-After")
            raise Unavailable(f"{self.name} sink {self.url}: HTTP {resp.status_code}",
                              float(retry) if retry and retry.isdigit() else None)
        if resp.status_code >= 400:
            raise Rejected(f"{self.name} sink {self.url}: HTTP {resp.status_code}: {resp.text[:300]}")

    def _sign(self, body: bytes) -> dict[str, str]:
        return self._headers


class IngestSink(_HttpSink):
    """POSTs events (a JSON array) to ingest's ``/api/v1/events`` with a bearer token (write scope)."""

    name = "ingest"

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(base_url.rstrip("/") + "/api/v1/events", headers, timeout_s)


class WebhookSink(_HttpSink):
    """POSTs ``{"events": [...]}`` to a webhook. With ``secret``, header ``X-Zhizao-Signature:
    t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` lets the receiver verify the sender and
    refuse an old (replayed) delivery (:mod:`analytics.events.signature`; a retry is signed anew)."""

    name = "webhook"

    def __init__(self, url: str, headers: dict[str, str] | None = None, secret: str | None = None,
                 timeout_s: float = 10.0) -> None:
        super().__init__(url, headers or {}, timeout_s)
        self._secret = secret

    def _body(self, events: Sequence[Event]) -> Any:
        return {"events": [event_json(e) for e in events]}

    def _sign(self, body: bytes) -> dict[str, str]:
        if not self._secret:
            return self._headers
        return {**self._headers, SIGNATURE_HEADER: sign_webhook(self._secret, body)}
