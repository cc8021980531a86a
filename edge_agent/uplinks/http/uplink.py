"""HTTP uplink: POST a batch in zhizao's wire format to ingest, translate the answer.

Request: ``POST <url>/api/v1/batches``, body :func:`zhizao.wire.encode_batch` (gzip when
configured, with ``Content-Encoding: gzip``), ``Authorization: Bearer <token>`` when a token is
set. Answers, translated per :mod:`edge_agent.uplinks.base`:

- 2xx with ingest's ``BatchResult`` JSON for THIS batch (``producer`` and ``batch_id`` of the
  batch sent, ``accepted`` a count, ``rejected`` a list): acknowledged; with rejections
  (``[{"index": i, "reason": r}, ...]``) :class:`~zhizao.errors.PartialWrite`.
- Ingest's verdict on the batch's content — 400, 413 or 422 as ingest's
  ``application/problem+json`` (``status`` member equal to the answer's status, a ``detail``):
  :class:`~zhizao.errors.Rejected` with ingest's detail (:class:`~zhizao.errors.PartialWrite`
  when a 400/422 lists per-sample rejections by ``index``). Nothing else dead-letters.
- 408, 429, 5xx and transport errors: :class:`~zhizao.errors.Unavailable` with ``Retry-After``
  (seconds or an HTTP date) when given.
- A *refusal* — :class:`~zhizao.errors.Unavailable` with ``retry_after = backoff_cap_s``, the
  batch stays in the buffer: 401/403 (a token problem, fixed by a person), and every answer that
  is not one of the above: a 2xx whose body is not ingest's result for this batch (a captive
  portal, another service answering 200), any other 4xx or a 4xx that is not ingest's
  problem+json (an HTML 404 of a reverse proxy with a wrong path prefix, an ingress without a
  backend, 405, a proxy's 413, 415), a 3xx. Each is counted in :attr:`HttpUplink.refused` under
  ``"HTTP <status>"`` (``"HTTP <status> not ingest"`` for a 2xx) — exported as
  ``zhizao_agent_uplink_refused_total{reason}`` — and logged as an ERROR naming the URL and the
  status once per change (the next delivery logs that ingest answers again).

Bulk (``bulk = true``, the default): ``send_bulk(batches)`` POSTs several stored batches in ONE
request to ``<url>/api/v1/batches/bulk`` — ``Content-Type: application/x-ndjson``, one wire-format
document per line, the whole body gzip when configured — and returns one outcome per batch, in
order: ``None`` (stored, or a duplicate of a stored one), :class:`~zhizao.errors.PartialWrite`
(some samples refused, by index), :class:`~zhizao.errors.Rejected` (that line refused for good
by ingest, e.g. an invalid envelope) or :class:`~zhizao.errors.Unavailable` (that line only:
resend it). Whole-request answers: 408/429/5xx/transport errors raise ``Unavailable`` (resend
all: the ones already stored come back as duplicates); 401/403 as for ``send``; a 2xx that is
not ingest's ``BulkResult`` (a ``batches`` list) is a refusal as for ``send``; 413 splits the
request in halves (a single batch too large: ``Rejected`` when ingest said so, a refusal — that
batch ``Unavailable`` — when a proxy did); 404/405 (an ingest without the bulk endpoint, or no
ingest at all) sends the first batch to ``/api/v1/batches``: when ingest answers there, this
uplink switches to one ``POST /api/v1/batches`` per batch (logged once), otherwise that refusal
is raised and bulk stays on; ingest's problem+json 4xx sends this request's batches one by one,
so each gets its own verdict; any other answer is a refusal as for ``send``.

A ``duplicate`` answer (ingest stored this producer and batch id before) whose counts do not add
up to the batch (``accepted`` + ``rejected`` != the batch's samples) means that id was stored for
OTHER data — an id reused, e.g. by a buffer restored from a snapshot of an older version: the
samples of this batch were not stored. Nothing can be done on the wire (resending gives the same
answer); it is counted in :attr:`HttpUplink.id_conflicts`, exported as
``zhizao_agent_uplink_id_conflicts_total``, and logged as an ERROR naming the batch.

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
PROBLEM_JSON = "application/problem+json"
CONTENT_VERDICTS = frozenset({400, 413, 422})
"""Statuses by which ingest refuses a batch for its content (bad envelope, too many samples or
bytes, data the store refuses); dead-lettered only when the answer is ingest's problem+json."""
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
        self.refused: Counter[str] = Counter()
        """Refusals per reason (``"HTTP 401"``, ``"HTTP 404"``, ``"HTTP 200 not ingest"``...): answers
        that are no verdict of ingest on a batch; the batch stayed in the buffer."""
        self._refusal: tuple[str, str] | None = None  # (URL, reason) of the refusal logged last
        self.id_conflicts = 0
        """Batches ingest answered as duplicates of an id it had stored for other data (see the
        module docstring): their samples were not stored."""
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
        """POST ``batch``; returns when ingest acknowledged it, else raises (see the module docstring)."""
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        body = wire.encode_batch(batch, compress=self.config.gzip, version=self.config.wire_version)
        await self._post(body, batch)

    async def send_encoded(self, batch: EncodedBatch) -> None:
        """Like :meth:`send` for a batch as the buffer stores it (no per-sample encoding)."""
        body = await asyncio.to_thread(batch.body, compress=self.config.gzip,  # zlib releases the GIL
                                       version=self.config.wire_version)
        await self._post(body, batch)

    async def send_bulk(self, batches: Sequence[EncodedBatch]) -> list[Outcome]:
        """POST ``batches`` in one bulk request; one outcome per batch (see the module docstring).

        Raises :class:`~zhizao.errors.Unavailable` when the whole request must be resent: a
        ``Rejected`` outcome only ever comes from ingest's own verdict on that batch."""
        if self._client is None:
            raise RuntimeError("HttpUplink used outside 'async with'")
        if self.bulk is None:
            return await self._one_by_one(batches)
        raw = b"\n".join(b.line(self.config.wire_version) for b in batches)
        body = await asyncio.to_thread(_gzip, raw) if self.config.gzip else raw
        url = self.bulk_endpoint
        resp = await self._request(url, body, {"Content-Type": NDJSON})
        status = resp.status_code
        doc = _json(resp)
        if 200 <= status < 300:
            return self._bulk_outcomes(resp, doc, batches)
        message = _problem(doc, resp)
        if status in (404, 405):
            return await self._without_bulk(batches, status)
        if status == 413 and len(batches) > 1:  # whoever said it (ingest or a proxy): halves are smaller
            half = len(batches) // 2
            log.info("%s found a bulk request of %d batches too large (%s); splitting it", url,
                     len(batches), message)
            return [*await self.send_bulk(batches[:half]), *await self.send_bulk(batches[half:])]
        if status == 413 and _ingest_problem(resp, doc):  # one batch too large: as on /api/v1/batches
            self._answered()
            return [Rejected(f"ingest answered 413: {message}")]
        if status == 413:  # a proxy's limit, not ingest's verdict: this batch waits, the others go on
            return [self._refuse(url, resp, doc)]
        retry = self._retry(url, resp, doc)
        if retry is not None:
            raise retry
        if 400 <= status < 500 and _ingest_problem(resp, doc):
            log.error("ingest refused a bulk request (%d: %s); sending its %d batches one by one",
                      status, message, len(batches))
            return await self._one_by_one(batches)
        raise self._refuse(url, resp, doc)

    async def _without_bulk(self, batches: Sequence[EncodedBatch], status: int) -> list[Outcome]:
        """The bulk endpoint answered ``status`` (404/405): send the first batch to
        ``/api/v1/batches``. Ingest answering there (delivered, or its verdict on the batch) means
        it has no bulk endpoint: bulk is switched off for good (logged once) and the other batches
        follow one by one. Otherwise that send's ``Unavailable`` (e.g. a refusal: neither endpoint
        is there) propagates and bulk stays on, so the next call probes again."""
        if not batches:
            return []
        first: Outcome = None
        try:
            await self.send_encoded(batches[0])
        except (PartialWrite, Rejected) as exc:
            first = exc
        if self.bulk is not None:
            log.warning("ingest at %s has no bulk endpoint (%d at %s): sending one batch per request",
                        self.endpoint, status, self.bulk_endpoint)
            self.bulk = None
        return [first, *await self._one_by_one(batches[1:])]

    async def _one_by_one(self, batches: Sequence[EncodedBatch]) -> list[Outcome]:
        out: list[Outcome] = []
        for b in batches:
            try:
                await self.send_encoded(b)
                out.append(None)
            except (PartialWrite, Rejected) as exc:
                out.append(exc)
        return out

    def _bulk_outcomes(
        self, resp: httpx.Response, doc: Any, batches: Sequence[EncodedBatch]
    ) -> list[Outcome]:
        lines = doc.get("batches") if isinstance(doc, dict) else None
        if not isinstance(lines, list):  # not ingest's BulkResult: a portal, another service...
            raise self._refuse(self.bulk_endpoint, resp, doc)
        if len(lines) != len(batches):
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
            self._check_duplicate(line, batch)
            rejected = _rejections(line)
            if rejected:
                accepted = line.get("accepted")
                out.append(PartialWrite(accepted if isinstance(accepted, int) else len(batch) - len(rejected),
                                        rejected))
            else:
                out.append(None)
        self._answered()
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

    async def _post(self, body: bytes, batch: Batch | EncodedBatch) -> None:
        self._check(await self._request(self.endpoint, body), batch)

    def _check(self, resp: httpx.Response, batch: Batch | EncodedBatch) -> None:
        """Return if ``resp`` is ingest's acknowledgement of ``batch``, else raise (see the module
        docstring): ``PartialWrite``/``Rejected`` only on ingest's own verdict."""
        url, status = self.endpoint, resp.status_code
        doc = _json(resp)
        if 200 <= status < 300:
            if not _batch_result(doc, batch):
                raise self._refuse(url, resp, doc)
            self._answered()
            self._check_duplicate(doc, batch)
            rejected = _rejections(doc)
            if rejected:
                raise PartialWrite(doc["accepted"], rejected)
            return
        retry = self._retry(url, resp, doc)
        if retry is not None:
            raise retry
        if status in CONTENT_VERDICTS and _ingest_problem(resp, doc):
            self._answered()
            rejected = _rejections(doc)
            if status in (400, 422) and rejected:
                accepted = doc.get("accepted")
                raise PartialWrite(accepted if isinstance(accepted, int) else 0, rejected)
            raise Rejected(f"ingest answered {status}: {_problem(doc, resp)}")
        raise self._refuse(url, resp, doc)

    def _check_duplicate(self, result: dict[str, Any], batch: Batch | EncodedBatch) -> None:
        """Count and log a ``duplicate`` ``result`` whose counts do not add up to ``batch``."""
        if result.get("duplicate") is not True:
            return
        accepted, rejected = result.get("accepted"), result.get("rejected")
        if not isinstance(accepted, int) or not isinstance(rejected, list):
            return
        if accepted + len(rejected) != len(batch):
            self.id_conflicts += 1
            log.error("ingest had stored batch %s/%s before with %d sample(s) accepted, but this batch has "
                      "%d (%d rejected now): its id was used for other data and these samples were NOT "
                      "stored (a buffer restored from an old snapshot?)", batch.producer, batch.batch_id,
                      accepted, len(batch), len(rejected))

    def _retry(self, url: str, resp: httpx.Response, doc: Any) -> Unavailable | None:
        """The ``Unavailable`` for a 408/429/5xx (``Retry-After`` honoured) or a 401/403 (a
        refusal); ``None`` for any other answer."""
        status = resp.status_code
        if status in (408, 429) or status >= 500:
            return Unavailable(f"ingest answered {status}: {_problem(doc, resp)}",
                               parse_retry_after(resp.headers.get("Retry-After")))
        if status in (401, 403):
            return self._refuse(url, resp, doc)
        return None

    def _refuse(self, url: str, resp: httpx.Response, doc: Any) -> Unavailable:
        """Count and log (ERROR, once per change of URL and reason) an answer of ``url`` that is
        no verdict of ingest on the batch; the ``Unavailable`` to raise (or to return as a bulk
        outcome): the batch stays in the buffer, retried after ``backoff_cap_s``."""
        status = resp.status_code
        reason = f"HTTP {status} not ingest" if 200 <= status < 300 else f"HTTP {status}"
        self.refused[reason] += 1
        what = resp.headers.get("content-type") or "no content type"
        if status in (401, 403):
            hint = f"ingest refused the token ({_problem(doc, resp)}): fix the token"
        elif 200 <= status < 300:
            hint = (f"this is not ingest's result for the batch sent ({what}: {_snippet(resp)}): is this the "
                    f"zhizao ingest? check the URL/path prefix (url = {self.config.url})")
        else:
            hint = (f"not a verdict of ingest on the batch ({what}: {_problem(doc, resp)}): is this the "
                    f"zhizao ingest? check the URL/path prefix (url = {self.config.url})")
            if status == 413:
                hint += ", or a proxy's body-size limit (raise it, or lower max_batch_samples/bulk_max_bytes)"
        cap = self.config.backoff_cap_s
        if self._refusal != (url, reason):
            self._refusal = (url, reason)
            log.error("HTTP uplink: %s answered %d: %s; the data waits in the buffer, retried every %g s "
                      "(counted in zhizao_agent_uplink_refused_total{reason=%r})",
                      url, status, hint, cap, reason)
        return Unavailable(f"{url} answered {status}: {hint}", retry_after=cap)

    def _answered(self) -> None:
        """Ingest answered (a delivery or its verdict on a batch): a refusal logged before is over."""
        if self._refusal is not None:
            log.info("HTTP uplink: ingest answers again at %s (after %s at %s)", self.config.url,
                     self._refusal[1], self._refusal[0])
            self._refusal = None


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _json(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None


def _ingest_problem(resp: httpx.Response, doc: Any) -> bool:
    """``resp`` is one of ingest's problem documents (RFC 9457 ``application/problem+json`` whose
    ``status`` is the answer's status, with a ``detail``): not a proxy's or another server's page."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    return (ctype == PROBLEM_JSON and isinstance(doc, dict) and doc.get("status") == resp.status_code
            and isinstance(doc.get("detail"), str))


def _batch_result(doc: Any, batch: Batch | EncodedBatch) -> bool:
    """``doc`` is ingest's ``BatchResult`` for ``batch``: its ``producer`` and ``batch_id``, an
    ``accepted`` count and a ``rejected`` list."""
    return (isinstance(doc, dict) and doc.get("producer") == batch.producer
            and doc.get("batch_id") == batch.batch_id and type(doc.get("accepted")) is int
            and isinstance(doc.get("rejected"), list))


def _snippet(resp: httpx.Response) -> str:
    text = " ".join(resp.text[:120].split())
    return repr(text) if text else "empty body"


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
