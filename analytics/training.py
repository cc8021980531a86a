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
recorded as the model's validation false-alarm rate. A new version becomes active only when asked
(``promote``, ``train --promote``) or when it is the scope's first and passes that check
(:func:`activates`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.errors import DataError, UnknownScope, UsageError
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
from analytics.storeargs import read_storage
from zhizao import signals as sig
from zhizao.model import LEVELS, valid_segment
from zhizao.wire import format_ts

if TYPE_CHECKING:
    from ingest.storage.base import CatalogueEntry

NOT_FEATURES = {sig.STATE, sig.STATE_REASON, sig.PRODUCT, sig.ANOMALY_SCORE, *sig.COUNTERS}
"""Never features (nor is any ``anomaly_score.<model>``)."""
NO_SIGNAL = "no numeric process signal"
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
        raise DataError("history", f"{NO_SIGNAL} in the requested window")
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


HIGH_HELDOUT_FLAG_RATE = 0.2
"""Above this validation ``heldout_flag_rate`` ``train`` warns and still saves the version, but does
not make it active by itself (:func:`activates`; ``--promote`` does). The held-out rows
are the last 20 % of the same healthy-looking history; a model that fits it flags few of them (the
simulated line's health models and the live-training test: under 0.01; the debounce needs half of
15 rows above the threshold). One held-out row in five flagged means the history is not one regime
(a drift, another product or operating point after the training rows, or a mixed scope): such a
model would raise alarms on normal running all day."""
MAX_LISTED = 20
"""How many known machines an unknown-machine message lists."""


def machine_scope(scope: str, where: str = "scope") -> str:
    """``scope`` if it is one machine's asset path; a ``UsageError`` naming the expected form if not:
    a level that is not a name (``..``, empty, a character outside letters, digits, ``_.-``), more
    than four levels, or a site, area or line (one model would mix the signals of several machines)."""
    parts = scope.split("/")
    for i, part in enumerate(parts):
        level = f"{LEVELS[i]} level" if i < len(LEVELS) else f"level {i + 1}"
        if not valid_segment(part):
            raise UsageError(where, f"{scope!r} is not a machine's asset path: its {level} {part!r} is "
                                    "not a name (1-64 letters, digits, '_', '.', '-', starting with a letter "
                                    "or digit); give site/area/line/machine") from None
    if len(parts) > len(LEVELS):
        raise UsageError(where, f"{scope!r} has {len(parts)} levels: a machine's asset path is "
                                "site/area/line/machine")
    if len(parts) < len(LEVELS):
        kind = {1: "a site", 2: "an area", 3: "a line"}[len(parts)]
        example = "/".join([*parts, *("<site>", "<area>", "<line>", "<machine>")[len(parts):]])
        raise UsageError(where, f"{scope!r} is {kind}: a model is trained per machine; give its asset path "
                                f"site/area/line/machine (e.g. {example})")
    return scope


async def _check_known(store: object, scope: str, where: str) -> list[CatalogueEntry]:
    """The store's catalogue of machine ``scope``; ``UnknownScope`` (listing the machines it has:
    assets publishing a ``state``, else every asset) when it has no data of that machine at all."""
    cat = [e for e in await store.catalogue(scope) if e.asset == scope]  # type: ignore[attr-defined]
    if cat:
        return cat
    everything: list[CatalogueEntry] = await store.catalogue()  # type: ignore[attr-defined]
    machines = sorted({e.asset for e in everything if e.signal == sig.STATE}
                      or {e.asset for e in everything})
    more = len(machines) - MAX_LISTED
    known = ", ".join(machines[:MAX_LISTED]) + (f" ... ({more} more)" if more > 0 else "")
    raise UnknownScope(where, f"the store has no data of machine {scope!r} at all; "
                              + (f"machines it has: {known}" if machines else "it is empty"))


async def train_from_store(scope: str, start: datetime, end: datetime, *, registry: ModelRegistry,
                           spec: ModelSpec | None = None, duckdb: str | None = None,
                           ingest_config: str | None = None, signals: list[str] | None = None,
                           model: str = HEALTH, power: str = sig.POWER_KW,
                           where: str = "scope", promote: bool = False) -> ModelMetadata:
    """Load machine ``scope``'s history from the store, fit ``model`` (module docstring), validate,
    save a new version under its registry scope (:func:`~analytics.scoring.context.model_scope`),
    active when ``promote`` or by :func:`activates`.
    ``signals``: the health model's signals (default every numeric process signal); the energy
    model's load signals (required; ``power`` is added as the target). ``spec`` defaults to the
    model's preset. The store (:func:`~analytics.storeargs.read_storage`) must exist; ``scope`` must be
    one machine the store has data of (``UsageError``/``UnknownScope`` naming ``where``), and
    "nothing in the window" says the window and when the machine's data was last seen."""
    from ingest.storage.registry import open_store

    machine_scope(scope, where)
    settings = read_storage(duckdb, ingest_config)
    if model not in MODELS:
        raise DataError("model", f"unknown model {model!r}: train fits {', '.join(MODELS)}")
    if model == ENERGY:
        energy_signals(signals, power, "signals")
    wanted = [*signals, power] if model == ENERGY and signals else signals
    async with open_store(settings) as store:
        cat = await _check_known(store, scope, where)
        try:
            h = await load_history(store, scope, start, end, signals=wanted)
        except DataError as exc:
            if exc.where != "history" or not exc.message.startswith(NO_SIGNAL):
                raise
            last = max(e.last_seen for e in cat)
            raise DataError(f"asset {scope}",
                            f"{NO_SIGNAL} between {format_ts(start)} and {format_ts(end)} "
                            f"(its last sample in the store is at {format_ts(last)})") from None
    if model == ENERGY:
        fitted, validation = fit_energy(h, spec or energy(), power)
    else:
        fitted, validation = fit_history(h, spec or ModelSpec())
    target = model_scope(scope, model)
    activate = not promote and activates(validation, first=not registry.versions(target))
    meta = registry.save(target, fitted, validation=validation, activate=activate,
                         training={"start": start, "end": end, "rows": fitted.n_train})
    if promote:  # checked as every promotion is (the artifact just written, read back)
        registry.promote(target, meta.version)
    return meta


def suspect(validation: dict[str, float]) -> bool:
    """The model flags more than :data:`HIGH_HELDOUT_FLAG_RATE` of its own held-out history."""
    return validation.get("heldout_flag_rate", 0.0) > HIGH_HELDOUT_FLAG_RATE


def activates(validation: dict[str, float], *, first: bool) -> bool:
    """Whether a newly trained version becomes active without ``--promote``: only a scope's first
    version (a scope without a model scores nothing; a later one replaces a model in use, which is
    the user's decision: ``models promote``), and only when it passes its own validation (not
    :func:`suspect`: a model that flags a fifth of its healthy history would alarm all day)."""
    return first and not suspect(validation)


def energy_signals(signals: list[str] | None, power: str, where: str = "--signals") -> list[str]:
    """``signals`` if they are the energy model's load signals; a ``DataError`` naming ``where``
    when there are none or when they include its target ``power``."""
    if not signals:
        raise DataError(where, f"the energy model needs its load signals, what power depends on (e.g. "
                               f"{where} spindle_load); {power!r} is added as the target")
    if power in signals:
        raise DataError(where, f"{power!r} is the energy model's target (--power-signal), not a load signal")
    return signals
