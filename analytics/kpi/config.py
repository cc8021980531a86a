"""Configuration of the KPI engine (``analytics/kpi/sample.toml`` documents every key)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from zhizao.config import StrictModel, load_config
from zhizao.plant import PlantConfig


class DataQualityConfig(StrictModel):
    gap_threshold_s: float = Field(90.0, gt=0)
    """Samples further apart than this are a telemetry gap (state and counters repeat at least
    once a minute)."""
    coverage_bucket_s: float = Field(60.0, gt=0)
    """Signals other than the KPI ones are checked for gaps per bucket of this width (``0`` buckets
    = a gap); set ``check_all_signals = false`` to skip that query."""
    check_all_signals: bool = True
    lookback_s: float = Field(300.0, ge=0)
    """How far before a window to read, to know the state and counters at its start."""
    clock_skew_tolerance_s: float = Field(2.0, ge=0)
    """Clock jumps up to this (seconds) are normal jitter, not skew."""
    counter_rollover: dict[str, float] = Field(default_factory=dict)
    """Signal -> value at which that counter wraps (e.g. ``parts_total = 65536``); a drop from
    near it is a rollover, any other drop a reset to 0."""
    energy_jitter_kwh: float = Field(1e-6, ge=0)
    """An energy counter drop smaller than this is float jitter, not a reset."""


class Targets(StrictModel):
    """Improvement targets against a baseline (the regional programme's defaults)."""

    energy_efficiency_pct: float = Field(15.0, ge=0)
    """kWh per good part must fall to baseline / (1 + x/100)."""
    operating_cost_reduction_pct: float = Field(10.0, ge=0)
    """Energy cost per good part must fall by x %."""
    productivity_pct: float = Field(20.0, ge=0)
    """Good parts per planned hour must rise by x %."""


class KpiConfig(StrictModel):
    plant: str = ""
    """Path to a ``zhizao.plant.PlantConfig`` file (TOML/YAML): shift calendar, ideal cycle
    times, tariff. Relative paths are relative to this config file."""
    data_quality: DataQualityConfig = DataQualityConfig()
    targets: Targets = Targets()


def load_kpi_config(path: str | Path) -> tuple[KpiConfig, PlantConfig]:
    """Load a KPI config and the plant file it names."""
    p = Path(path)
    cfg = load_config(KpiConfig, p)
    plant_path = Path(cfg.plant)
    if not plant_path.is_absolute():
        plant_path = p.parent / plant_path
    return cfg, load_config(PlantConfig, plant_path)
