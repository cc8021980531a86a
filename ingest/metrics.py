"""Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram(
            "zhizao_ingest_request_seconds", "HTTP request latency by route template and status class",
            ["route", "status"], registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.samples_written = Counter("zhizao_ingest_samples_written_total",
                                       "Samples committed to the store", ["source"], registry=r)
        self.samples_rejected = Counter("zhizao_ingest_samples_rejected_total",
                                        "Samples rejected inside accepted batches, by field", ["reason"],
                                        registry=r)
        self.batches = Counter("zhizao_ingest_batches_total", "Batches acknowledged", ["result"], registry=r)
        self.dedup_hits = Counter("zhizao_ingest_dedup_hits_total",
                                  "Resent batches acknowledged without storing them again", registry=r)
        self.requests_rejected = Counter("zhizao_ingest_requests_rejected_total",
                                         "Requests refused, by HTTP status and reason", ["status", "reason"],
                                         registry=r)
        self.store_errors = Counter("zhizao_ingest_store_errors_total",
                                    "Store operations that failed or timed out", ["operation"], registry=r)
        self.ignored_tags = Counter("zhizao_ingest_lineprotocol_ignored_tags_total",
                                    "Line-protocol tags not mapped to anything (see the convention)",
                                    registry=r)
        self.store_up = Gauge("zhizao_ingest_store_up", "1 when the last store operation succeeded",
                              registry=r)
        self.rate_limit_producers = Gauge(
            "zhizao_ingest_rate_limit_producers",
            "Producers whose rate-limit bucket is held (not full again); 0 without a rate limit",
            registry=r)
