"""SKAB (Skoltech Anomaly Benchmark) evaluation, following the dataset's PROTOCOL.md."""

from analytics.skab.data import SIGNALS, SkabFile, load_skab
from analytics.skab.evaluate import SkabConfig, SkabResult, alternatives, evaluate
from analytics.skab.metrics import changepoints_from_flags, nab_score, outlier_metrics
from analytics.skab.report import render

__all__ = ["SIGNALS", "SkabConfig", "SkabFile", "SkabResult", "alternatives", "changepoints_from_flags",
           "evaluate", "load_skab", "nab_score", "outlier_metrics", "render"]
