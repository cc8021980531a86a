"""Training from stored history: query a machine's signals, align them, keep comparable states, fit.

History is read through the ingest ``Store`` seam (DuckDB or InfluxDB, whichever the ingest config
names) as per-second means (``bucket_s``), aligned on the union of timestamps and forward-filled.
Counters, ``state``, ``product`` and earlier ``anomaly_score*`` series are never features.

Two models per machine (:mod:`analytics.scoring.context`):

* ``health`` (:func:`fit_history`): when the machine publishes ``state``, only ``running`` rows
  are used (and scored): a machine is compared with itself in a comparable operating state;
  default spec ``ModelSpec()`` (``--config analytics/detectors/robust_z/machine-health.toml`` is
  the one validated on the simulated line with a 24-h reference; on a 1-h history it raised two
  false alarms in the scoring-service test where the default raised none).
* ``energy`` (:func:`fit_energy`): expected power from the state (one-hot ``state=`` columns),
  the load signals named and, last, the measured power; every row is used (and scored); default
  spec :func:`~analytics.scoring.presets.energy`.

The last ``validation_share`` of the rows is held out: the share of held-out rows flagged is
recorded as the model's validation false-alarm rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.errors import DataError
from analytics.registry import ModelMetadata, ModelRegistry
from analytics.scoring import AnomalyModel, ModelSpec, piece_starts
from analytics.scoring.context import (
    ENERGY,
    HEALTH,
    design,
    is_score_signal,
    model_scope,
    state_columns,
    state_labels,
)
from analytics.scoring.presets import energy
from zhizao import signals as sig

NOT_FEATURES = {sig.STATE, sig.STATE_REASON, sig.PRODUCT, sig.ANOMALY_SCORE, *sig.COUNTERS}
"""Never features (nor is any ``anomaly_score.<model>``)."""
MODELS = (HEALTH, ENERGY)
"""The models ``train`` fits (:mod:`analytics.scoring.context`)."""


@dataclass
class History:
    """Aligned history of one machine: ``ts_us`` (n,), ``values`` (n, d), ``running`` (n,) and
    ``state`` (n,) the forward-filled state per row (``None`` where not known yet; no array when
    the machine publishes no state)."""

    ts_us: NDArray[np.int64]
    values: NDArray[np.float64]
    columns: list[str]
    running: NDArray[np.bool_]
    state: NDArray[np.object_] | None = None


def align(series: dict[str, pd.Series], state: pd.Series | None) -> History:
    """Outer-join numeric series on time, forward-fill, drop leading rows with gaps."""
    if not series:
        raise DataError("history", "no numeric process signal in the requested window")
    df = pd.concat(series, axis=1).sort_index().ffill().dropna()
    if df.empty:
        raise DataError("history", "signals never overlap in time")
    labels: NDArray[np.object_] | None = None
    if state is not None and len(state):
        labels = state_labels(state.sort_index().reindex(df.index, method="ffill"))
        running = labels == sig.MachineState.RUNNING.value
    else:
        running = np.ones(len(df), dtype=bool)
    index = df.index.tz_convert(None) if getattr(df.index, "tz", None) is not None else df.index
    ts = index.to_numpy().astype("datetime64[us]").astype(np.int64)
    return History(ts_us=ts, values=df.to_numpy(dtype=np.float64), columns=[str(c) for c in df.columns],
                   running=running, state=labels)


async def load_history(store: object, asset: str, start: datetime, end: datetime, *,
                       signals: list[str] | None = None, bucket_s: float = 1.0) -> History:
    """Query ``store`` (an ingest ``Store``) and align; see module docstring."""
    from ingest.storage.base import Agg, SeriesQuery

    wanted = (*signals, sig.STATE) if signals else ()  # the state too: it decides which rows count
    q = SeriesQuery(asset=asset, start=start, end=end, signals=wanted, agg=Agg.MEAN,
                    bucket=timedelta(seconds=bucket_s), limit=10_000_000)
    result = await store.query(q)  # type: ignore[attr-defined]
    numeric: dict[str, pd.Series] = {}
    state: pd.Series | None = None
    for s in result:
        if s.signal == sig.STATE:
            state = s.to_pandas()
        elif not s.is_string and s.signal not in NOT_FEATURES and not is_score_signal(s.signal) and len(s):
            numeric[s.signal] = s.to_pandas()
    if signals:
        missing = [x for x in signals if x not in numeric]
        if missing:
            raise DataError(f"asset {asset}", f"no numeric data for signal(s) {missing} in the window")
    return align(numeric, state)


def fit_history(h: History, spec: ModelSpec,
                validation_share: float = 0.2) -> tuple[AnomalyModel, dict[str, float]]:
    """Fit on the first part of the running rows; validation metrics on the held-out rest."""
    X = h.values[h.running]
    if len(X) < 50:
        raise DataError("history", f"only {len(X)} rows in running state; need at least 50 to train")
    starts = piece_starts(h.running)  # no window spans a stop, in training as in scoring
    return _fit_validated(AnomalyModel(spec=spec), X, h.columns, validation_share, starts)


def fit_energy(h: History, spec: ModelSpec, power: str = sig.POWER_KW,
               validation_share: float = 0.2) -> tuple[AnomalyModel, dict[str, float]]:
    """Expected ``power`` from the state and the other columns of ``h``, on every row; validation
    metrics on the held-out last rows. Columns: ``state=<s>`` for every state (when the machine
    publishes one), the load signals in ``h``'s order, ``power`` last (the detector's target)."""
    if power not in h.columns:
        raise DataError("history", f"no numeric data for the power signal {power!r} in the window")
    if len(h.values) < 50:
        raise DataError("history", f"only {len(h.values)} rows; need at least 50 to train")
    columns = [*(state_columns() if h.state is not None else []),
               *[c for c in h.columns if c != power], power]
    X = design(columns, h.columns, h.values, h.state)
    return _fit_validated(AnomalyModel(spec=spec, states="all"), X, columns, validation_share)


def _fit_validated(model: AnomalyModel, X: NDArray[np.float64], columns: list[str], validation_share: float,
                   resets: NDArray[np.bool_] | None = None) -> tuple[AnomalyModel, dict[str, float]]:
    """Fit ``model`` on the first rows of ``X``, score all of them in order; the share of the
    held-out last ``validation_share`` flagged is the validation false-alarm rate."""
    cut = int(len(X) * (1 - validation_share))
    head, tail = (None, None) if resets is None else (resets[:cut], resets[cut:])
    model.fit(X[:cut], columns=columns, resets=head)
    scorer = model.stream()
    scorer.push(X[:cut], resets=head)
    held = scorer.push(X[cut:], resets=tail)
    return model, {"heldout_rows": float(len(X) - cut), "heldout_flag_rate": float(held.flag.mean())}


async def train_from_store(scope: str, start: datetime, end: datetime, *, registry: ModelRegistry,
                           spec: ModelSpec | None = None, duckdb: str | None = None,
                           ingest_config: str | None = None, signals: list[str] | None = None,
                           model: str = HEALTH, power: str = sig.POWER_KW) -> ModelMetadata:
    """Load machine ``scope``'s history from the store, fit ``model`` (module docstring), validate,
    save a new version under its registry scope (:func:`~analytics.scoring.context.model_scope`).
    ``signals``: the health model's signals (default every numeric process signal); the energy
    model's load signals (required; ``power`` is added as the target). ``spec`` defaults to the
    model's preset."""
    from ingest.settings import DuckDBSettings, StorageSettings, load_settings
    from ingest.storage.registry import open_store

    if duckdb:
        settings = StorageSettings(backend="duckdb", duckdb=DuckDBSettings(path=duckdb))
    else:
        settings = load_settings(ingest_config).storage
    if model not in MODELS:
        raise DataError("model", f"unknown model {model!r}: train fits {', '.join(MODELS)}")
    if model == ENERGY and not signals:
        raise DataError("signals", "the energy model needs its load signals (what power depends on, "
                                   f"e.g. spindle_load); {power!r} is added as the target")
    if model == ENERGY and signals and power in signals:
        raise DataError("signals", f"{power!r} is the energy model's target, not a load signal")
    wanted = [*signals, power] if model == ENERGY and signals else signals
    async with open_store(settings) as store:
        h = await load_history(store, scope, start, end, signals=wanted)
    if model == ENERGY:
        fitted, validation = fit_energy(h, spec or energy(), power)
    else:
        fitted, validation = fit_history(h, spec or ModelSpec())
    return registry.save(model_scope(scope, model), fitted, validation=validation,
                         training={"start": start, "end": end, "rows": fitted.n_train})
