"""Training from stored history: query a machine's signals, align them, keep comparable states, fit.

History is read through the ingest ``Store`` seam (DuckDB or InfluxDB, whichever the ingest config
names) as per-second means (``bucket_s``), aligned on the union of timestamps and forward-filled.
Context: when the machine publishes ``state``, only ``running`` rows are used (and scored): a
machine is compared with itself in a comparable operating state. Counters, ``state``,
``product`` and earlier ``anomaly_score`` series are never features. The last ``validation_share``
of the rows is held out: the share of held-out rows flagged is recorded as the model's
validation false-alarm rate.
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
from zhizao import signals as sig

NOT_FEATURES = {sig.STATE, sig.STATE_REASON, sig.PRODUCT, sig.ANOMALY_SCORE, *sig.COUNTERS}


@dataclass
class History:
    """Aligned history of one machine: ``ts_us`` (n,), ``values`` (n, d), ``running`` (n,)."""

    ts_us: NDArray[np.int64]
    values: NDArray[np.float64]
    columns: list[str]
    running: NDArray[np.bool_]


def align(series: dict[str, pd.Series], state: pd.Series | None) -> History:
    """Outer-join numeric series on time, forward-fill, drop leading rows with gaps."""
    if not series:
        raise DataError("history", "no numeric process signal in the requested window")
    df = pd.concat(series, axis=1).sort_index().ffill().dropna()
    if df.empty:
        raise DataError("history", "signals never overlap in time")
    if state is not None and len(state):
        st = state.reindex(df.index, method="ffill")
        running = (st == sig.MachineState.RUNNING.value).to_numpy()
    else:
        running = np.ones(len(df), dtype=bool)
    index = df.index.tz_convert(None) if getattr(df.index, "tz", None) is not None else df.index
    ts = index.to_numpy().astype("datetime64[us]").astype(np.int64)
    return History(ts_us=ts, values=df.to_numpy(dtype=np.float64), columns=[str(c) for c in df.columns],
                   running=running)


async def load_history(store: object, asset: str, start: datetime, end: datetime, *,
                       signals: list[str] | None = None, bucket_s: float = 1.0) -> History:
    """Query ``store`` (an ingest ``Store``) and align; see module docstring."""
    from ingest.storage.base import Agg, SeriesQuery

    q = SeriesQuery(asset=asset, start=start, end=end, signals=tuple(signals or ()), agg=Agg.MEAN,
                    bucket=timedelta(seconds=bucket_s), limit=10_000_000)
    result = await store.query(q)  # type: ignore[attr-defined]
    numeric: dict[str, pd.Series] = {}
    state: pd.Series | None = None
    for s in result:
        if s.signal == sig.STATE:
            state = s.to_pandas()
        elif not s.is_string and s.signal not in NOT_FEATURES and len(s):
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
    cut = int(len(X) * (1 - validation_share))
    starts = piece_starts(h.running)  # no window spans a stop, in training as in scoring
    model = AnomalyModel(spec=spec).fit(X[:cut], columns=h.columns, resets=starts[:cut])
    scorer = model.stream()
    scorer.push(X[:cut], resets=starts[:cut])
    held = scorer.push(X[cut:], resets=starts[cut:])
    return model, {"heldout_rows": float(len(X) - cut), "heldout_flag_rate": float(held.flag.mean())}


async def train_from_store(scope: str, start: datetime, end: datetime, *, registry: ModelRegistry,
                           spec: ModelSpec, duckdb: str | None = None, ingest_config: str | None = None,
                           signals: list[str] | None = None) -> ModelMetadata:
    """Load ``scope``'s history from the store, fit, validate, save a new registry version."""
    from ingest.settings import DuckDBSettings, StorageSettings, load_settings
    from ingest.storage.registry import open_store

    if duckdb:
        settings = StorageSettings(backend="duckdb", duckdb=DuckDBSettings(path=duckdb))
    else:
        settings = load_settings(ingest_config).storage
    async with open_store(settings) as store:
        h = await load_history(store, scope, start, end, signals=signals)
    model, validation = fit_history(h, spec)
    return registry.save(scope, model, validation=validation,
                         training={"start": start, "end": end, "rows": model.n_train})
