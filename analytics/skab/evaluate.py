"""Running the SKAB protocol: per file, fit on the first 400 rows, predict the rest, pool.

The same :class:`~analytics.scoring.AnomalyModel` the CSV scorer uses runs over each whole file
online (each row's output depends on that row, earlier rows and the model fitted on the first
400 rows); only the test part (rows 400..) is evaluated. Hyper-parameters are one
:class:`SkabConfig` for all 34 files; its defaults are the *frozen* configuration of
:mod:`analytics.skab.frozen` (every number fixed without SKAB labels or SKAB test rows).
Changepoint predictions are the flag's transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydantic import Field

from analytics.scoring import AnomalyModel, ModelSpec
from analytics.skab.data import SIGNALS, SkabFile
from analytics.skab.frozen import (
    FROZEN_NAME,
    FROZEN_REFRACTORY,
    ROUND2_NAME,
    ROUND3_NAME,
    frozen_spec,
    round2_spec,
    round3_spec,
)
from analytics.skab.metrics import (
    PROFILES,
    OutlierMetrics,
    changepoints_from_flags,
    nab_score,
    outlier_metrics,
)
from zhizao.config import StrictModel

TRAIN_ROWS: Final = 400
LEVEL_SIGNALS: Final = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Voltage",
                        "Volume Flow RateRMS"]
INVALID: Final = " [selected on SKAB test rows - not a valid result]"


class SkabConfig(StrictModel):
    """One configuration for the whole benchmark. The defaults are the frozen, pre-registered
    configuration (see :mod:`analytics.skab.frozen` for where each number comes from)."""

    name: str = FROZEN_NAME
    signals: list[str] = Field(default_factory=lambda: list(SIGNALS))
    model: ModelSpec = Field(default_factory=frozen_spec)
    refractory: int = Field(FROZEN_REFRACTORY, ge=0)


@dataclass(frozen=True)
class SkabResult:
    name: str
    outliers: OutlierMetrics
    nab: dict[str, float]


def fit_run_model(X: np.ndarray, spec: ModelSpec, columns: list[str] | None = None) -> AnomalyModel:
    """The model of one run, fitted on its first ``TRAIN_ROWS`` rows only: detector parameters
    and the threshold (a quantile of those rows' scores) never see a later row."""
    return AnomalyModel(spec=spec).fit(X[:TRAIN_ROWS], columns=columns)


def predict_rows(X: np.ndarray, spec: ModelSpec, columns: list[str] | None = None) -> np.ndarray:
    """0/1 predictions for rows ``TRAIN_ROWS``.. of one run (online: row ``i``'s prediction uses
    rows ``..i`` and the model of :func:`fit_run_model`)."""
    model = fit_run_model(X, spec, columns)
    out = model.stream().push(X)
    return out.flag[TRAIN_ROWS:].astype(np.int64)


def predict_file(f: SkabFile, cfg: SkabConfig) -> np.ndarray:
    """0/1 predictions for the test part (rows ``TRAIN_ROWS``..) of one file."""
    idx = [SIGNALS.index(s) for s in cfg.signals]
    return predict_rows(f.values[:, idx], cfg.model, cfg.signals)


def score_predictions(name: str, files: Sequence[SkabFile], preds: Sequence[np.ndarray],
                      refractory: int) -> SkabResult:
    """Pooled outlier metrics and NAB scores (three profiles) of test-part predictions."""
    labels = [f.anomaly[TRAIN_ROWS:] for f in files]
    ts = [f.ts[TRAIN_ROWS:] for f in files]
    cps = [f.changepoint[TRAIN_ROWS:] for f in files]
    pred_cp = [changepoints_from_flags(p, refractory) for p in preds]
    return SkabResult(name=name, outliers=outlier_metrics(labels, preds),
                      nab={p: nab_score(ts, cps, pred_cp, p) for p in PROFILES})


def evaluate(files: Sequence[SkabFile], cfg: SkabConfig) -> SkabResult:
    """Outlier metrics and NAB scores (three profiles) of ``cfg`` over ``files``."""
    unknown = [s for s in cfg.signals if s not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown SKAB signals {unknown}; choose from {SIGNALS}")
    return score_predictions(cfg.name, files, [predict_file(f, cfg) for f in files], cfg.refractory)


def round2_config() -> SkabConfig:
    """Round 2's frozen configuration (:mod:`analytics.skab.round2`, :func:`round2_spec`)."""
    return SkabConfig(name=ROUND2_NAME, model=round2_spec())


def round3_config() -> SkabConfig:
    """Round 3's frozen configuration (:mod:`analytics.skab.round3`, :func:`round3_spec`)."""
    return SkabConfig(name=ROUND3_NAME, model=round3_spec())


def preregistered() -> list[SkabConfig]:
    """Every configuration frozen before its one SKAB run, in the order they were frozen."""
    return [SkabConfig(), round2_config(), round3_config()]


def selected_on_test() -> SkabConfig:
    """The earlier default, whose settings were chosen by reading pooled SKAB results (selection
    on the test rows). Kept only to show what it was; its figures are not a valid result."""
    return SkabConfig(name="robust-z, six signals" + INVALID, signals=list(LEVEL_SIGNALS),
                      model=ModelSpec(detector="robust_z", detector_params={"rel_floor": 0.003},
                                      windows=[5], threshold_quantile=0.99, threshold_factor=1.25,
                                      vote_window=15, vote_fraction=0.5),
                      refractory=30)


def alternatives() -> list[SkabConfig]:
    """Configurations measured earlier with the same protocol, all with settings read on SKAB
    results (labelled as such): shown with ``--all`` for the record, never as the result."""
    def spec(detector: str, **params: object) -> ModelSpec:
        return ModelSpec(detector=detector, detector_params=dict(params), windows=[5],
                         threshold_factor=1.25, vote_window=15)
    old = selected_on_test()
    return [
        old,
        old.model_copy(update={"name": "robust-z, all 8 signals" + INVALID, "signals": list(SIGNALS)}),
        old.model_copy(update={"name": "PCA T2+Q" + INVALID, "model": spec("pca_t2q", variance=0.9)}),
        old.model_copy(update={"name": "regression residual (MSET-style)" + INVALID,
                               "model": spec("residual", alpha=1.0)}),
    ]
