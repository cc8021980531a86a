"""Per-product health contexts of the simulated-line evaluation (``health_by_product``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.detectors import make_detector
from analytics.detectors.expected_power import ExpectedPowerDetector
from analytics.simline import SimEvalConfig
from analytics.simline.evaluate import contexts, health_flags


def frame(segments: list[tuple[str, str, float, int]], seed: int) -> pd.DataFrame:
    """Rows of (state, product, signal level, n rows); two noisy signals around the level."""
    rng = np.random.default_rng(seed)
    rows = [(st, prod, level + rng.normal(0, 1), level + rng.normal(0, 1))
            for st, prod, level, n in segments for _ in range(n)]
    idx = pd.date_range("2026-01-01", periods=len(rows), freq="1s", tz="UTC")
    return pd.DataFrame(rows, columns=["state", "product", "a", "b"], index=idx)


def test_contexts_label_running_rows_by_product() -> None:
    df = frame([("running", "A", 0, 2), ("setup", "A", 0, 1), ("running", "B", 0, 2)], 0)
    assert contexts(df, by_product=False).tolist() == ["running"] * 2 + [""] + ["running"] * 2
    assert contexts(df, by_product=True).tolist() == ["running|A"] * 2 + [""] + ["running|B"] * 2


def test_a_product_is_compared_only_with_itself() -> None:
    # product B normally runs at level 10, A at 0; in the test B runs at A's level
    ref = frame([("running", "A", 0, 2000), ("setup", "A", 0, 100), ("running", "B", 10, 2000)], 1)
    test = frame([("running", "A", 0, 600), ("setup", "A", 0, 100), ("running", "B", 0, 600)], 2)
    by_machine = health_flags(ref, test, ["a", "b"], SimEvalConfig())
    by_product = health_flags(ref, test, ["a", "b"], SimEvalConfig(health_by_product=True))
    assert not by_machine.any()  # level 0 is normal for the machine as a whole
    assert not by_product[:700].any() and by_product[700 + 120:].all()  # but not for product B
    # a product without enough reference rows falls back to the machine's model
    few = SimEvalConfig(health_by_product=True, min_context_rows=5000)
    assert (health_flags(ref, test, ["a", "b"], few) == by_machine).all()


def test_the_shipped_health_config_is_the_validated_one() -> None:
    """``machine-health.toml`` (``zhizao analytics train --config``, the one-box stack, the
    simulated-line evaluation) holds exactly the settings the README's figures were measured with:
    editing it is noticed here."""
    from pathlib import Path

    from analytics.scoring import ModelSpec
    from analytics.scoring.presets import MACHINE_HEALTH, machine_health
    from zhizao.config import load_config

    validated = ModelSpec(detector="robust_z",
                          detector_params={"aggregate": "max", "use_std": False, "tail_quantile": 0.999},
                          windows=[5], diff_windows=[60, 300], settle="median", threshold_quantile=0.99,
                          threshold_factor=1.25, vote_window=15, vote_fraction=0.5)
    assert machine_health() == validated == SimEvalConfig().health
    # the energy model chosen on seeds 61-65 (session 8) and 81-85 (session 9): the detector's
    # default, linear_base on, extrapolating at most 1.0 x the range of the operating cell
    energy = SimEvalConfig().energy
    det = make_detector(energy.detector, **energy.detector_params)
    assert isinstance(det, ExpectedPowerDetector) and det.linear_base and det.extrapolation_margin == 1.0
    root = Path(__file__).resolve().parents[2]
    assert MACHINE_HEALTH.parent == root / "analytics" / "detectors" / "robust_z"
    load_config(ModelSpec, MACHINE_HEALTH.parent / "sample.toml")  # the generic sample stays valid too
