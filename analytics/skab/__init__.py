"""SKAB (Skoltech Anomaly Benchmark) evaluation, following the dataset's PROTOCOL.md.

The default :class:`SkabConfig` is the frozen configuration of :mod:`analytics.skab.frozen`,
chosen on the simulated proxy (:mod:`analytics.skab.proxy`, :mod:`analytics.skab.select`),
never on SKAB labels or test rows.
"""

from analytics.skab.data import SIGNALS, SkabFile, load_skab
from analytics.skab.evaluate import (
    TRAIN_ROWS,
    SkabConfig,
    SkabResult,
    alternatives,
    evaluate,
    preregistered,
    round2_config,
    round3_config,
    selected_on_test,
)
from analytics.skab.frozen import FROZEN_NAME, frozen_spec
from analytics.skab.metrics import changepoints_from_flags, nab_score, outlier_metrics
from analytics.skab.report import render

__all__ = ["FROZEN_NAME", "SIGNALS", "TRAIN_ROWS", "SkabConfig", "SkabFile", "SkabResult", "alternatives",
           "changepoints_from_flags", "evaluate", "frozen_spec", "load_skab", "nab_score", "outlier_metrics",
           "preregistered", "render", "round2_config", "round3_config",
           "selected_on_test"]
