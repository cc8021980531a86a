"""The write path, independent of HTTP: decode, limit, deduplicate, store — in that order.

:class:`IngestService` is created by the app factory and shared by the routes. Its contract:
a batch is acknowledged (returns) only after the store committed it; any problem raises
:class:`~ingest.problems.Problem` (4xx, nothing stored) or ``StoreUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field

from ingest.decode import Decoder
from ingest.metrics import Metrics
from ingest.problems import Problem
from ingest.ratelimit import RateLimiter
from ingest.settings import Settings
from ingest.storage.base import BatchKey, SampleFrame, Store, WriteResult
from zhizao.errors import StoreUnavailable, WireFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    producer: str
    batch_id: str
    seq: int
    accepted: int
    rejected: dict[int, str]
    duplicate: bool


@dataclass
class IngestService:
    settings: Settings
    store: Store
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.decoder = Decoder()
        limits = self.settings.limits
        self.limiter = (None if limits.rate_samples_per_s is None
                        else RateLimiter(limits.rate_samples_per_s, limits.rate_burst_samples))

    def refuse(self, problem: Problem) -> Problem:
        """Count a refused request and return ``problem`` for raising."""
        self.metrics.requests_rejected.labels(str(problem.status), problem.reason).inc()
        return problem

    async def write_frame(self, frame: SampleFrame, key: BatchKey | None, source: str) -> WriteResult:
        """Store ``frame`` within the configured write timeout; ``StoreUnavailable`` otherwise."""
        timeout = self.settings.storage.write_timeout_s
        try:
            result = await asyncio.wait_for(self.store.write(frame, key), timeout)
        except TimeoutError:
            self.metrics.store_errors.labels("write").inc()
            self.metrics.store_up.set(0)
            raise StoreUnavailable(f"store did not commit within {timeout} s") from None
        except StoreUnavailable:
            self.metrics.store_errors.labels("write").inc()
            self.metrics.store_up.set(0)
            raise
        except Exception as exc:  # a store bug: answer 500 cleanly, keep serving
            self.metrics.store_errors.labels("write").inc()
            log.error("store %s failed unexpectedly", self.store.name, exc_info=exc)
            raise Problem(500, f"internal store error ({type(exc).__name__}); nothing was acknowledged "
                          "— see the ingest log", reason="store_bug") from None
        self.metrics.store_up.set(1)
        if not result.duplicate:
            self.metrics.samples_written.labels(source).inc(result.accepted)
        return result

    async def ingest_batch(self, body: bytes) -> BatchOutcome:
        """Decode and store one wire-format batch (``body`` possibly gzip)."""
        limits = self.settings.limits
        try:
            decoded = self.decoder.decode(body, max_bytes=limits.max_body_bytes)
        except WireFormatError as exc:
            if "larger than" in exc.message or "inflates to more than" in exc.message:
                raise self.refuse(Problem(413, f"{exc}; the limit is {limits.max_body_bytes} bytes",
                                          reason="body_too_large", limit=limits.max_body_bytes)) from None
            raise self.refuse(Problem(400, f"invalid batch: {exc}", reason="wire_format",
                                      errors=[{"field": exc.path, "message": exc.message}])) from None
        if decoded.total > limits.max_samples_per_batch:
            raise self.refuse(Problem(
                413, f"batch has {decoded.total} samples; "
                f"the limit is {limits.max_samples_per_batch} per batch",
                reason="too_many_samples", limit=limits.max_samples_per_batch))
        key = BatchKey(decoded.producer, decoded.batch_id)
        if self.limiter is not None:
            wait = self.limiter.take(decoded.producer, decoded.total)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise self.refuse(Problem(
                    429, f"producer {decoded.producer!r} exceeds {limits.rate_samples_per_s:g} samples/s; "
                    f"retry in {retry} s", reason="rate_limited", headers={"Retry-After": str(retry)}))
        for reason in decoded.rejected.values():
            self.metrics.samples_rejected.labels(reason.split(":", 1)[0] or "sample").inc()
        if decoded.rejected:
            log.info("batch %s/%s: %d samples rejected, first: %s", key.producer, key.batch_id,
                     len(decoded.rejected), next(iter(decoded.rejected.items())))
        result = await self.write_frame(decoded.frame, key, "batch")
        if result.duplicate:
            self.metrics.dedup_hits.inc()
            self.metrics.batches.labels("duplicate").inc()
        else:
            self.metrics.batches.labels("stored").inc()
        return BatchOutcome(decoded.producer, decoded.batch_id, decoded.seq, result.accepted,
                            decoded.rejected, result.duplicate)
