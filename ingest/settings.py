"""Ingest configuration: a pydantic model loaded from TOML/YAML with ``zhizao.config.load_config``.

Environment overrides (applied by :func:`load_settings` after the file): ``ZHIZAO_INGEST_HOST``,
``ZHIZAO_INGEST_PORT``, ``ZHIZAO_INGEST_BACKEND``, ``ZHIZAO_INGEST_DUCKDB_PATH``,
``ZHIZAO_INGEST_INFLUX_URL``, ``ZHIZAO_INGEST_INFLUX_TOKEN``, ``ZHIZAO_INGEST_AUTH_ENABLED``.
Secrets (InfluxDB token/password) have no defaults. See ``ingest/sample.toml`` for every option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from zhizao.config import StrictModel, load_config, validate
from zhizao.events import EventSource
from zhizao.model import valid_id


class DuckDBSettings(StrictModel):
    """Embedded DuckDB store: one file (``:memory:`` only for throwaway use)."""

    path: str = "zhizao.duckdb"
    memory_limit: str | None = None
    """DuckDB ``memory_limit`` (e.g. ``"1GB"``); ``None`` keeps DuckDB's default."""


class InfluxSettings(StrictModel):
    """InfluxDB via its v1-compatible HTTP API (``/write``, ``/query``): 1.8+, 2.x (DBRP) and 3.x."""

    url: str = "http://127.0.0.1:8086"
    database: str = "zhizao"
    retention_policy: str | None = None
    """``None`` writes to the database's default retention policy (``rp`` parameter otherwise)."""
    token: str | None = None
    """Sent as ``Authorization: Token <token>`` (InfluxDB 2.x/3.x); exclusive with username/password."""
    username: str | None = None
    password: str | None = None
    measurement: str = "telemetry"
    timeout_s: float = Field(default=10.0, gt=0)
    verify_tls: bool = True
    """Check an ``https://`` InfluxDB's certificate (``false``: never in production)."""
    ca_file: str | None = None
    """PEM bundle of the CA(s) to trust for an InfluxDB with a private CA (instead of the system CAs)."""


class StorageSettings(StrictModel):
    backend: Literal["duckdb", "influxdb"] = "duckdb"
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    write_timeout_s: float = Field(default=10.0, gt=0)
    """A write not committed within this time answers 503 with Retry-After (nothing acknowledged)."""
    retry_after_s: int = Field(default=5, ge=1)
    retention_days: float | None = Field(default=None, gt=0)
    """Samples older than this are deleted hourly; ``None`` keeps everything."""


class EventProducers(StrictModel):
    """Who may post events of each ``source`` (``POST /api/v1/events``): a write token that may
    write as one of the producers listed for it (a forwarder or an unbound token: every source;
    ``ingest/eventbinding.py``). One field per :class:`~zhizao.events.EventSource`; an empty list:
    only forwarders and unbound tokens."""

    kpi: list[str] = Field(default_factory=lambda: ["zhizao-kpi"])
    """The KPI alerter (``zhizao analytics kpi --watch``)."""
    anomaly: list[str] = Field(default_factory=lambda: ["zhizao-scoring"])
    """The scoring service: the ``producer`` of its score batches (its default)."""
    system: list[str] = Field(default_factory=lambda: ["zhizao-system"])

    @field_validator("kpi", "anomaly", "system")
    @classmethod
    def _producer_ids(cls, producers: list[str]) -> list[str]:
        bad = [p for p in producers if not valid_id(p)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a producer id (1-128 letters, digits, '_', '.', ':', '-', "
                             "the first a letter or digit)")
        return producers

    def of(self, source: EventSource) -> list[str]:
        """The producers whose tokens may post events of ``source``."""
        producers: list[str] = getattr(self, source.value)
        return producers


class AuthSettings(StrictModel):
    enabled: bool = True
    """``false`` accepts every request without a token — for the one-box demo only; logged loudly."""
    tokens_file: str = "zhizao-tokens.json"
    event_producers: EventProducers = Field(default_factory=EventProducers)


class LimitSettings(StrictModel):
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Largest request body, compressed or inflated; larger answers 413."""
    max_samples_per_batch: int = Field(default=50_000, gt=0)
    max_bulk_batches: int = Field(default=1000, gt=0)
    """Most batches (lines) in one ``POST /api/v1/batches/bulk``; more answers 413."""
    max_bulk_samples: int = Field(default=200_000, gt=0)
    """Most samples in one bulk request, all lines together; more answers 413."""
    rate_samples_per_s: float | None = Field(default=None, gt=0)
    """Per-producer token bucket (samples/s); ``None`` = unlimited. Excess answers 429 + Retry-After."""
    rate_burst_samples: int = Field(default=100_000, gt=0)


class DedupSettings(StrictModel):
    max_age_days: float = Field(default=7.0, gt=0)
    max_entries: int = Field(default=1_000_000, gt=0)


class TLSSettings(StrictModel):
    cert: str | None = None
    key: str | None = None


class ExtensionSettings(StrictModel):
    """Other components' routers mounted by ``zhizao ingest`` (see ``ingest/extensions.py``)."""

    fleet: bool = False
    """``GET /api/v1/agents``: agents and gateways seen, from their health samples (gateway.fleet_api)."""
    kpi_config: str | None = None
    """A KPI config (``analytics/kpi/sample.toml``): mounts the KPI API (``GET /api/v1/kpis`` ...)."""
    web: bool = True
    """The built-in web dashboard at ``/`` (dashboards.web); on by default for the one-box setup."""
    web_options: dict[str, Any] = Field(default_factory=dict)
    """Options of the web dashboard (``dashboards/web/sample.toml``), validated when it is mounted."""


class Settings(StrictModel):
    """Everything ``zhizao ingest`` needs. All defaults run a local DuckDB-backed service."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    extensions: ExtensionSettings = Field(default_factory=ExtensionSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


_ENV: dict[str, tuple[str, ...]] = {
    "ZHIZAO_INGEST_HOST": ("host",),
    "ZHIZAO_INGEST_PORT": ("port",),
    "ZHIZAO_INGEST_BACKEND": ("storage", "backend"),
    "ZHIZAO_INGEST_DUCKDB_PATH": ("storage", "duckdb", "path"),
    "ZHIZAO_INGEST_INFLUX_URL": ("storage", "influxdb", "url"),
    "ZHIZAO_INGEST_INFLUX_TOKEN": ("storage", "influxdb", "token"),
    "ZHIZAO_INGEST_AUTH_ENABLED": ("auth", "enabled"),
}


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from ``path`` (TOML/YAML) or defaults, then the environment overrides above.

    Raises ``ConfigError`` naming each bad key (file or environment variable).
    """
    settings = load_config(Settings, path) if path is not None else Settings()
    environ = os.environ if env is None else env
    overrides = {k: v for k, v in environ.items() if k in _ENV}
    if not overrides:
        return settings
    doc = settings.model_dump()
    for name, value in overrides.items():
        node = doc
        *parents, leaf = _ENV[name]
        for key in parents:
            node = node[key]
        node[leaf] = value
    return validate(Settings, doc, "environment (" + ", ".join(sorted(overrides)) + ")")
