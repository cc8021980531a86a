"""Running the SKAB protocol: per file, fit on the first 400 rows, predict the rest, pool.

The same :class:`~analytics.scoring.AnomalyModel` the CSV scorer uses runs over each whole file
online (each row's output depends on that row, earlier rows and the model fitted on the first
400 rows); only the test part (rows 400..) is evaluated. Hyper-parameters are one
:class:`SkabConfig` for all 34 files. Changepoint predictions are the flag's transitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from pydantic import Field

from analytics.scoring import AnomalyModel, ModelSpec
from analytics.skab.data import SIGNALS, SkabFile
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


class SkabConfig(StrictModel):
    """One configuration for the whole benchmark. ``signals``: the default leaves out the two
    temperatures, which drift for minutes after start-up and after a fault (a 400-row training
    window cannot describe their normal range)."""

    name: str = "zhizao robust-z"
    signals: list[str] = Field(default_factory=lambda: list(LEVEL_SIGNALS))
    model: ModelSpec = Field(default_factory=ModelSpec)
    refractory: int = Field(30, ge=0)


@dataclass(frozen=True)
class SkabResult:
    name: str
    outliers: OutlierMetrics
    nab: dict[str, float]


def predict_file(f: SkabFile, cfg: SkabConfig) -> np.ndarray:
    """0/1 predictions for the test part (rows ``TRAIN_ROWS``..) of one file."""
    idx = [SIGNALS.index(s) for s in cfg.signals]
    X = f.values[:, idx]
    model = AnomalyModel(spec=cfg.model).fit(X[:TRAIN_ROWS], columns=cfg.signals)
    out = model.stream().push(X)
    return out.flag[TRAIN_ROWS:].astype(np.int64)


def evaluate(files: Sequence[SkabFile], cfg: SkabConfig) -> SkabResult:
    """Outlier metrics and NAB scores (three profiles) of ``cfg`` over ``files``."""
    unknown = [s for s in cfg.signals if s not in SIGNALS]
    if unknown:
        raise ValueError(f"unknown SKAB signals {unknown}; choose from {SIGNALS}")
    preds = [predict_file(f, cfg) for f in files]
    labels = [f.anomaly[TRAIN_ROWS:] for f in files]
    ts = [f.ts[TRAIN_ROWS:] for f in files]
    cps = [f.changepoint[TRAIN_ROWS:] for f in files]
    pred_cp = [changepoints_from_flags(p, cfg.refractory) for p in preds]
    return SkabResult(name=cfg.name, outliers=outlier_metrics(labels, preds),
                      nab={p: nab_score(ts, cps, pred_cp, p) for p in PROFILES})


def alternatives() -> list[SkabConfig]:
    """Other configurations measured with the same protocol (what was tried), for the report."""
    def spec(detector: str, **params: object) -> ModelSpec:
        return ModelSpec(detector=detector, detector_params=dict(params))
    return [
        SkabConfig(name="robust-z, all 8 signals", signals=list(SIGNALS)),
        SkabConfig(name="robust-z, no smoothing/vote", model=ModelSpec(windows=[1], vote_window=1)),
        SkabConfig(name="PCA T2+Q", model=spec("pca_t2q", variance=0.9)),
        SkabConfig(name="regression residual (MSET-style)", model=spec("residual", alpha=1.0)),
        SkabConfig(name="IsolationForest", model=spec("isolation_forest", n_estimators=100)),
    ]
