"""Configuration of the scoring service (``analytics/scoring/service/sample.toml`` documents every key).

Validated before anything connects; a bad key or value is reported with its dotted name
(``zhizao.config.load_config``). Exactly one of ``[ingest]`` (read and write through ingest's HTTP
API — the default and the only choice while ingest runs on DuckDB, which allows one process per
file) and ``[storage]`` (open the store directly, like the KPI feed: InfluxDB, or a DuckDB file
no other process holds) names where rows are read and scores written.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from analytics.events.config import SinksConfig
from analytics.events.debounce import ANOMALY_CLEAR_AFTER_S, ANOMALY_HOLD_ACROSS_GAPS, ANOMALY_OPEN_AFTER_S
from analytics.scoring.context import check_model_name
from ingest.settings import StorageSettings
from ingest.storage.base import AssetPrefix
from zhizao.config import StrictModel, http_bearer_warnings, load_config
from zhizao.errors import ConfigError
from zhizao.model import valid_id


class IngestApiConfig(StrictModel):
    """Ingest's HTTP API: ``GET /api/v1/catalogue`` and ``/series`` (read scope) and
    ``POST /api/v1/batches`` (write scope) — a token with both scopes (or admin) when auth is on."""

    url: str = Field(pattern=r"^https?://")
    token: str | None = None
    token_file: str | None = None
    """File holding the token (e.g. a Docker secret); used when ``token`` is not set."""
    timeout_s: float = Field(30.0, gt=0)
    verify_tls: bool | str = True
    """``true``, ``false`` or the path of a CA bundle."""
    bulk: bool = True
    """Write a step's window batches in one ``POST /api/v1/batches/bulk`` (each deduplicated on its
    own id); ``false`` (or an ingest without the endpoint) posts one batch per request."""
    allow_plaintext: bool = False
    """Silences the warning for a token sent over ``http://`` to a host that is not loopback
    (:meth:`plaintext_warnings`), for a network you trust; prefer ``https://``."""

    def plaintext_warnings(self, key: str = "ingest") -> list[str]:
        """One line per secret sent unencrypted to a host that is not loopback: the token (which
        reads and writes) over ``http://``, a password in the URL (:func:`http_bearer_warnings`)."""
        field = "token" if self.token else "token_file" if self.token_file else None
        return http_bearer_warnings(key, self.url, field, self.allow_plaintext)

    def bearer(self) -> str | None:
        if self.token:
            return self.token
        if self.token_file:
            try:
                return Path(self.token_file).read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                problem = ("ingest.token_file", f"cannot read {self.token_file}: {exc.strerror or exc}")
                raise ConfigError(self.token_file, [problem]) from exc
        return None


class HealthConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(9111, ge=0, le=65535)
    """0 picks a free port (tests); the bound port is logged."""
    stall_after_s: float = Field(600.0, gt=0)
    """``/healthz`` and ``/readyz`` turn 503 (``unhealthy``) when no round has succeeded for this
    long (ingest or the store unreachable that long). A failing machine makes them 503
    (``degraded``) at once: probes debounce with their own failure threshold."""
    wedged_after_s: float = Field(900.0, gt=0)
    """``/livez`` turns 503 when the loop has ended no round and no machine step for this long (a
    wedged process: the one case a restart fixes). Failed rounds and failing machines still end
    their steps, so they never fail liveness."""


class ServiceConfig(StrictModel):
    scopes: list[AssetPrefix] = Field(min_length=1)
    """Machine paths (``site/area/line/machine``) or prefixes (``site``, ``site/area``,
    ``site/area/line``), resolved through the catalogue at start and at every registry poll."""
    registry: str = "zhizao-models"
    """Model registry directory (``zhizao analytics train`` writes it)."""
    models: list[str] = Field(default_factory=lambda: ["health"], min_length=1)
    """The models scored on every machine, each with its own cursor, score series and events
    (:mod:`analytics.scoring.context`): ``health`` (registry scope = the machine path, series
    ``anomaly_score``) and e.g. ``energy`` (scope ``<path>#energy``, series ``anomaly_score.energy``).
    A machine without an active version of a model is reported (``no_model``) for that model only."""
    state_dir: str = "zhizao-scoring-state"
    """Where each machine's cursor, scorer and episode state are persisted (one file per machine)."""
    producer: str = "zhizao-scoring"
    """Producer id of the score batches (ingest deduplicates on producer + batch id)."""
    interval_s: float = Field(5.0, gt=0)
    """Seconds between rounds (each round scores every machine's closed windows)."""
    window_s: float = Field(60.0, gt=0)
    """Windows on a fixed grid (aligned to the Unix epoch): each is scored once, as one batch."""
    lateness_s: float = Field(30.0, ge=0)
    """A window ``[a, b)`` is scored once every model signal has data at or after ``b + lateness_s``."""
    quiet_close_s: float = Field(300.0, gt=0)
    """When a machine's data stops advancing for this long (wall time), its open windows up to the
    last data are scored anyway (the machine went quiet)."""
    hold_after_s: float = Field(300.0, ge=0)
    """Sample-and-hold of a model signal reported only on change (a setpoint; OPC UA data-change
    subscriptions and MQTT report-by-exception send nothing while a value stays still): once its
    last report has not moved for this long (wall time) while another model signal of the machine
    has newer data, it is *held* — it stops holding back the watermark, which then follows the
    machine's other signals (never beyond their newest data), and its rows use its last value.
    Its next report is data like any other (``lateness_s``). A signal that lags because its
    source is down is held too after this long: its buffered data then arrives late."""
    max_future_s: float = Field(60.0, ge=0)
    """Data stamped more than this ahead of the service's clock (a device clock ahead) does not
    advance the watermark: the signal's progress is then taken from its data up to that horizon
    (counted in ``zhizao_scoring_future_data_total``, one WARNING per machine and change)."""
    max_windows_per_round: int = Field(60, ge=1)
    """Catch-up: at most this many windows per machine per round (one read)."""
    backfill_s: float = Field(0.0, ge=0)
    """A machine seen for the first time is scored from ``last data - backfill_s`` (0: from its
    current window on)."""
    max_rows_per_s: float = Field(0.0, ge=0)
    """Pace: at most this many rows scored per second overall (0 = as fast as possible). Live
    scoring needs (machines × rows per second); the limit bounds a catch-up after an outage,
    which would otherwise compete with ingest for CPU on a shared box."""
    write_concurrency: int = Field(4, ge=1, le=64)
    """Without the bulk endpoint: window batches of one step in flight at once."""
    bucket_s: float = Field(1.0, gt=0)
    """Rows are per-``bucket_s`` means of each signal, forward-filled (as in training)."""
    lookback_s: float = Field(300.0, ge=0)
    """Read this much before a window so forward-filled values and the state are known."""
    max_gap_s: float = Field(60.0, gt=0)
    """A step between two scored rows larger than this restarts the trailing windows."""
    registry_poll_s: float = Field(10.0, gt=0)
    """How often the registry is checked for a promoted (or rolled back) model and the catalogue
    for new machines."""
    open_after_s: float = Field(ANOMALY_OPEN_AFTER_S, ge=0)
    """Debounce: an episode opens after the flag held this long (data time)."""
    clear_after_s: float = Field(ANOMALY_CLEAR_AFTER_S, ge=0)
    """An episode resolves after the flag was clear this long (data time)."""
    hold_across_gaps: bool = ANOMALY_HOLD_ACROSS_GAPS
    """Both delays pause through a stop or a data gap instead of restarting after it."""
    top_k: int = Field(3, ge=1)
    """Contributors per event."""
    redeliver_s: float = Field(30.0, gt=0)
    """While a machine has no new window, undelivered event updates are retried this often."""
    max_pending_events: int = Field(1000, ge=1)
    """Undelivered event updates kept per machine for redelivery (latest per episode); beyond
    this the oldest are dropped, counted and logged."""
    ingest: IngestApiConfig | None = None
    storage: StorageSettings | None = None
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    """Where anomaly events go (``analytics/events``): ingest ``/api/v1/events``, MQTT, webhooks."""

    def plaintext_warnings(self) -> list[str]:
        """The ``[ingest]`` table's and the sinks' plaintext warnings (logged at start; printed by
        ``serve --check``); never a refusal."""
        own = self.ingest.plaintext_warnings() if self.ingest is not None else []
        return own + self.sinks.plaintext_warnings()
    health: HealthConfig = Field(default_factory=HealthConfig)


    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        for name in v:
            check_model_name(name)
        if len(set(v)) != len(v):
            raise ValueError(f"models {v} names a model twice")
        return v

    @field_validator("producer")
    @classmethod
    def _producer(cls, v: str) -> str:
        if not valid_id(v):
            raise ValueError("producer must be 1-128 letters, digits, '_', '.', ':', '-'")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ServiceConfig:
        if (self.ingest is None) == (self.storage is None):
            raise ValueError("set exactly one of [ingest] (ingest's HTTP API) and [storage] "
                             "(the store itself)")
        if self.window_s < self.bucket_s:
            raise ValueError("window_s must be at least bucket_s")
        return self


def load_service_config(path: str | Path) -> ServiceConfig:
    """Load and validate; ``ConfigError`` names each bad key. Relative ``registry``, ``state_dir``
    and ``ingest.token_file`` are made relative to the config file's folder."""
    p = Path(path)
    cfg = load_config(ServiceConfig, p)
    base = p.parent
    if not Path(cfg.registry).is_absolute():
        cfg.registry = str(base / cfg.registry)
    if not Path(cfg.state_dir).is_absolute():
        cfg.state_dir = str(base / cfg.state_dir)
    if cfg.ingest is not None and cfg.ingest.token_file and not Path(cfg.ingest.token_file).is_absolute():
        cfg.ingest.token_file = str(base / cfg.ingest.token_file)
    return cfg
