"""Simulated shifts shared by the KPI tests (generated once per session, offline, no servers)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.kpi.engine import KPI_SIGNALS
from simulator.engine import generate
from simulator.plant_export import plant_config
from simulator.scenario import Scenario, load_scenario
from zhizao.model import Sample
from zhizao.plant import PlantConfig

ROOT = Path(__file__).resolve().parents[3]
SHIFT_S = 8 * 3600
KEPT = (*KPI_SIGNALS, "mould_temp")
"""KPI signals plus the signal the example scenario drops out (for the coverage flag)."""


@dataclass
class Shift:
    scenario: Scenario
    plant: PlantConfig
    samples: list[Sample]
    ledger: list[dict[str, Any]]


def _run(path: Path, duration_s: float, shift_days: int = 0) -> Shift:
    sc = load_scenario(path)
    g = generate(sc, 7, duration_s)
    samples = [s for s in g if s.signal in KEPT]
    if shift_days:
        d = timedelta(days=shift_days)
        samples = [replace(s, ts=s.ts + d) for s in samples]
    return Shift(sc, plant_config(sc), samples, g.ledger)


@pytest.fixture(scope="session")
def workshop() -> Shift:
    """The example scenario's early shift (08:00-16:00 Asia/Shanghai, every fault kind)."""
    return _run(ROOT / "examples/workshop.toml", SHIFT_S)


@pytest.fixture(scope="session")
def improved() -> Shift:
    """The improved scenario's early shift, moved to the next day (so both fit in one store)."""
    return _run(ROOT / "examples/improved.toml", SHIFT_S, shift_days=1)


