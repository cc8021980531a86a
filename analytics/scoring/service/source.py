"""Where the scoring service reads rows and writes scores: the :class:`ScoreIO` seam, two backends.

* :class:`IngestApiIO` — ingest's HTTP API: ``GET /api/v1/catalogue``, ``GET /api/v1/series``
  (bucketed means, integer timestamps) and ``POST /api/v1/batches``. The default: it works whatever
  ingest stores into (DuckDB allows one process per file, so nothing else can open ingest's file
  while it runs), it goes through ingest's tokens and scopes, and ingest's back-pressure (429/503
  with ``Retry-After``) protects ingest's own write path from the scorer.
* :class:`StoreIO` — the ``Store`` itself (``ingest.storage.registry.open_store``), like the KPI
  feed: InfluxDB, or a DuckDB file no other process holds.

Both write a window's scores as one batch keyed ``(producer, batch_id)``: ingest and the stores
deduplicate on it, across restarts, so writing a window again stores nothing twice.
Errors: ``StoreUnavailable`` when the other side cannot be reached or answers 429/5xx (retry);
``Rejected`` for a refusal that would repeat (bad token, 4xx).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol, Self

import httpx
import numpy as np
import orjson

from analytics.scoring.rows import merge_units
from analytics.scoring.service.config import IngestApiConfig
from ingest.settings import StorageSettings
from ingest.storage.base import (
    BatchKey,
    CatalogueEntry,
    SampleFrame,
    Series,
    SeriesQuery,
    Store,
    WriteResult,
)
from zhizao.errors import Rejected, StoreUnavailable
from zhizao.wire import FORMAT, VERSION, format_ts, parse_ts

log = logging.getLogger(__name__)
_VTYPES = {"float": "f", "int": "i", "bool": "b", "string": "s"}


class ScoreIO(Protocol):
    """Reads rows and the catalogue, writes score batches. An async context manager."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def catalogue(self, prefix: str) -> list[CatalogueEntry]:
        """Every (machine, signal) under ``prefix`` with its last-seen time."""

    async def query(self, q: SeriesQuery) -> list[Series]:
        """As ``Store.query``."""

    async def write_many(self, parts: Sequence[tuple[SampleFrame, BatchKey]]) -> list[WriteResult]:
        """Store each frame once per its key; returns when every one is durable (results in order)."""


class StoreIO:
    """:class:`ScoreIO` over a ``Store`` opened from ``[storage]``."""

    name = "store"

    def __init__(self, settings: StorageSettings) -> None:
        from ingest.storage.registry import open_store

        self.store: Store = open_store(settings)

    async def __aenter__(self) -> Self:
        await self.store.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.__aexit__(*exc)

    async def catalogue(self, prefix: str) -> list[CatalogueEntry]:
        return await self.store.catalogue(prefix)

    async def query(self, q: SeriesQuery) -> list[Series]:
        return await self.store.query(q)

    async def write_many(self, parts: Sequence[tuple[SampleFrame, BatchKey]]) -> list[WriteResult]:
        return [await self.store.write(frame, key) for frame, key in parts]


class IngestApiIO:
    """:class:`ScoreIO` over ingest's HTTP API (module docstring)."""

    name = "ingest"

    BULK_LINES = 500
    BULK_SAMPLES = 100_000
    """Kept under ingest's default bulk limits (1,000 batches, 200,000 samples per request)."""

    def __init__(self, cfg: IngestApiConfig, *, concurrency: int = 4) -> None:
        self.base = cfg.url.rstrip("/")
        self.bulk = cfg.bulk
        self._concurrency = concurrency
        token = cfg.bearer()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = cfg.timeout_s
        self._verify = cfg.verify_tls
        self._client: httpx.AsyncClient | None = None
        self._seq = 0

    async def __aenter__(self) -> Self:
        self._client = httpx.AsyncClient(base_url=self.base, headers=self._headers, timeout=self._timeout,
                                         verify=self._verify)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        if self._client is None:
            raise RuntimeError("IngestApiIO used outside 'async with'")
        try:
            resp = await self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"ingest {self.base}{path}: {exc!r}") from exc
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise StoreUnavailable(f"ingest {self.base}{path}: HTTP {resp.status_code} {resp.text[:200]}")
        if resp.status_code >= 400:
            raise Rejected(f"ingest {self.base}{path}: HTTP {resp.status_code} {resp.text[:300]}")
        return orjson.loads(resp.content)

    async def catalogue(self, prefix: str) -> list[CatalogueEntry]:
        doc = await self._call("GET", "/api/v1/catalogue", params={"prefix": prefix})
        return [CatalogueEntry(asset=s["asset"], signal=s["signal"], unit=s.get("unit"),
                               vtype=_VTYPES.get(s.get("type", "float"), "f"),
                               last_seen=parse_ts(s["last_seen"]))
                for s in doc["signals"]]

    async def query(self, q: SeriesQuery) -> list[Series]:
        params: list[tuple[str, str | int]] = [
            ("asset", q.asset), ("start", format_ts(q.start)), ("end", format_ts(q.end)),
            ("limit", q.limit), ("epoch", "us")]
        params += [("signal", s) for s in q.signals]
        if q.agg is not None:
            params.append(("agg", q.agg.value))
        if q.bucket is not None:
            params.append(("bucket", f"{q.bucket / timedelta(microseconds=1):.0f}us"))
        doc = await self._call("GET", "/api/v1/series", params=params)
        series = [_series(s) for s in doc["series"]]
        # the API answers one series per unit; Store.query without by_unit one per signal
        return series if q.by_unit else merge_units(series, q.agg)

    async def write_many(self, parts: Sequence[tuple[SampleFrame, BatchKey]]) -> list[WriteResult]:
        """One ``POST /api/v1/batches/bulk`` per up to :attr:`BULK_LINES` batches (each still
        deduplicated on its own key); one ``POST /api/v1/batches`` per batch, ``concurrency`` at a
        time, when ``bulk`` is off or the ingest answers 404 (a version without the endpoint)."""
        out: list[WriteResult] = []
        start = 0
        while start < len(parts):
            end, samples = start, 0
            while end < len(parts) and end - start < self.BULK_LINES and (
                    end == start or samples + len(parts[end][0]) <= self.BULK_SAMPLES):
                samples += len(parts[end][0])
                end += 1
            chunk = parts[start:end]
            if self.bulk:
                try:
                    out += await self._bulk(chunk)
                except Rejected as exc:
                    if "HTTP 404" not in str(exc):
                        raise
                    self.bulk = False
                    log.warning("ingest %s has no bulk endpoint: one request per window from now on",
                                self.base)
            if not self.bulk:
                out += await self._one_by_one(chunk)
            start = end
        return out

    async def _one_by_one(self, parts: Sequence[tuple[SampleFrame, BatchKey]]) -> list[WriteResult]:
        gate = asyncio.Semaphore(self._concurrency)

        async def one(frame: SampleFrame, key: BatchKey) -> WriteResult:
            async with gate:
                return await self.write(frame, key)

        results = await asyncio.gather(*(one(f, k) for f, k in parts), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:  # every request has finished; the first failure stands for the step
            raise errors[0]
        return [r for r in results if isinstance(r, WriteResult)]

    def _doc(self, frame: SampleFrame, key: BatchKey) -> dict[str, Any]:
        self._seq += 1
        stamps = np.datetime_as_string(np.asarray(frame.ts_us, dtype="datetime64[us]"), unit="us").tolist()
        samples = [{"asset": a, "signal": s, "ts": t + "Z", "value": v}
                   for a, s, t, v in zip(frame.asset, frame.signal, stamps, frame.value, strict=True)]
        return {"format": FORMAT, "version": VERSION, "producer": key.producer, "batch_id": key.batch_id,
                "seq": self._seq, "samples": samples}

    async def _bulk(self, parts: Sequence[tuple[SampleFrame, BatchKey]]) -> list[WriteResult]:
        body = b"\n".join(orjson.dumps(self._doc(f, k)) for f, k in parts)
        doc = await self._call("POST", "/api/v1/batches/bulk", content=body,
                               headers={"Content-Type": "application/x-ndjson"})
        out = []
        for line, (_, key) in zip(doc["batches"], parts, strict=True):
            if line.get("error"):
                raise Rejected(f"ingest refused score batch {key.batch_id}: {line['error']}")
            if line.get("rejected"):
                raise Rejected(f"ingest refused {len(line['rejected'])} score samples of batch "
                               f"{key.batch_id}: {line['rejected'][:3]}")
            out.append(WriteResult(accepted=int(line["accepted"]), duplicate=bool(line["duplicate"])))
        return out

    async def write(self, frame: SampleFrame, key: BatchKey) -> WriteResult:
        """One batch through ``POST /api/v1/batches``."""
        body = orjson.dumps(self._doc(frame, key))
        doc = await self._call("POST", "/api/v1/batches", content=body,
                               headers={"Content-Type": "application/json"})
        if doc.get("rejected"):
            raise Rejected(f"ingest refused {len(doc['rejected'])} score samples of batch {key.batch_id}: "
                           f"{doc['rejected'][:3]}")
        return WriteResult(accepted=int(doc["accepted"]), duplicate=bool(doc["duplicate"]))


def _series(s: dict[str, Any]) -> Series:
    values = s["values"]
    n = len(values)
    if n > 0 and isinstance(values[-1], str):  # as Series.is_string: the last point's type
        num = np.full(n, np.nan)
        text = np.array(values, dtype=object)
        vt = np.full(n, "s")
    else:
        num = np.asarray(values, dtype=np.float64)  # numbers, booleans; None (empty aggregate) -> NaN
        text = np.full(n, None, dtype=object)
        vt = np.full(n, "f")
    return Series(asset=s["asset"], signal=s["signal"], unit=s.get("unit"),
                  ts_us=np.asarray(s["ts"], dtype=np.int64), value=num, value_str=text, vtype=vt,
                  quality=None if s.get("quality") is None else np.asarray(s["quality"]))
