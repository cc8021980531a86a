"""Configuration of the KPI feed (``analytics/kpi_feed/sample.toml`` documents every key)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator

from ingest.settings import StorageSettings
from ingest.storage.base import AssetPrefix
from zhizao.config import StrictModel, load_config


class FeedConfig(StrictModel):
    kpi_config: str
    """Path to the KPI engine's config (``analytics/kpi/sample.toml``), which names the plant file.
    Relative paths are relative to this file."""
    scopes: list[AssetPrefix] = Field(min_length=1)
    """Sites (``plant``), areas or lines (``plant/a1/line1``) to compute KPIs for."""
    interval_s: float = Field(60.0, ge=1)
    """Seconds between two computations (each reads the current shift so far)."""
    backfill_hours: float = Field(0.0, ge=0)
    """At start, also compute the KPIs of the last N hours every ``interval_s`` (history for charts)."""
    catch_up_rounds: int = Field(120, ge=0)
    """After failed rounds (store down) or a restart (from the heartbeat file's time), compute at
    most this many missed rounds, each at its own time, so the KPI series have no gap; older ones
    are skipped with a WARNING naming their range."""
    baselines_kwh_per_good_part: dict[str, float] = Field(default_factory=dict)
    """Machine path or line path -> baseline kWh per good part (the energy board's baseline/target)."""
    storage: StorageSettings = Field(default_factory=StorageSettings)
    """The store to read telemetry from: the same ``[storage]`` table as ingest's config. Must be
    ``influxdb`` (the feed exists for Grafana, which reads InfluxDB)."""
    output_measurement: str = Field("zhizao_kpi", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """Measurement the KPI series are written to (the dashboards query ``zhizao_kpi``)."""
    heartbeat_file: str | None = None
    """Touched after every successful round: a container healthcheck tests its age."""

    @field_validator("storage")
    @classmethod
    def _influx(cls, v: StorageSettings) -> StorageSettings:
        if v.backend != "influxdb":
            raise ValueError("the KPI feed writes series for Grafana, which reads InfluxDB: "
                             "set backend = \"influxdb\"")
        return v

    def sink_settings(self) -> StorageSettings:
        """The storage settings of the KPI measurement (same server and database)."""
        out = self.storage.model_copy(deep=True)
        out.influxdb.measurement = self.output_measurement
        return out



TOKEN_ENV = "ZHIZAO_KPI_FEED_INFLUX_TOKEN"
"""Environment variable overriding ``storage.influxdb.token`` (keeps the secret out of the file)."""


def load_feed_config(path: str | Path, env: Mapping[str, str] | None = None) -> FeedConfig:
    """Load and validate; ``ConfigError`` names each bad key. ``kpi_config`` is made absolute;
    :data:`TOKEN_ENV` in ``env`` (default: the process environment) sets the InfluxDB token."""
    p = Path(path)
    cfg = load_config(FeedConfig, p)
    token = (os.environ if env is None else env).get(TOKEN_ENV)
    if token:
        cfg.storage.influxdb.token = token
    kpi = Path(cfg.kpi_config)
    if not kpi.is_absolute():
        cfg.kpi_config = str(p.parent / kpi)
    return cfg
