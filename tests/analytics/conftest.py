"""Shared helpers for the anomaly-analytics tests (the KPI tests have their own folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SKAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "skab"


@pytest.fixture
def skab_dir() -> Path:
    assert (SKAB / "PROTOCOL.md").exists(), f"SKAB data expected at {SKAB} (../shared/datasets/skab)"
    return SKAB


def normal_rows(n: int = 600, d: int = 4, seed: int = 0) -> np.ndarray:
    """Correlated, noisy 'process signals' around realistic levels."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    X = 10.0 + np.hstack([base + 0.3 * rng.normal(size=(n, 1)) for _ in range(d)])
    X[:, 0] *= 5
    return X
