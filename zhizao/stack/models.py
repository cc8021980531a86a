"""Anomaly models for the one-box stack, trained on a clean reference run of the same line.

A plant commissions its models on a period it knows was healthy; the simulated line's
equivalent is an offline run of the scenario with every scheduled and random fault removed and
another seed (:func:`reference_models`). Each machine gets, by the ``analytics.training`` rules,
an equipment-health :class:`AnomalyModel` fitted on its running-state rows (counters, state and
product are not features) and — with ``energy`` — an energy model (expected power from the state
and its kind's load signals, every row: :func:`~analytics.training.fit_energy`), keyed by
registry scope (``<machine>`` and ``<machine>#energy``, :mod:`analytics.scoring.context`).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import pandas as pd

from analytics.errors import DataError
from analytics.scoring import AnomalyModel, ModelSpec
from analytics.scoring.context import ENERGY, model_scope
from analytics.scoring.presets import energy as energy_spec
from analytics.scoring.presets import machine_health
from analytics.simline.evaluate import LOAD_SIGNALS
from analytics.training import NOT_FEATURES, align, fit_energy, fit_history
from simulator.engine import generate
from simulator.scenario import RandomFaults, Scenario
from zhizao import signals as sig
from zhizao.model import Sample

log = logging.getLogger(__name__)
REFERENCE_SEED_OFFSET = 100_003


def default_spec() -> ModelSpec:
    """The model of the one-box stack, pinned (robust z-scores of 5-row means, threshold 1.25 × the
    99th percentile of training scores, half of 15 rows voting) so a change of the library's
    defaults does not silently change what ``zhizao check`` detects."""
    return ModelSpec(detector="robust_z", detector_params={"rel_floor": 0.003}, windows=[5],
                     threshold_quantile=0.99, threshold_factor=1.25, vote_window=15, vote_fraction=0.5)


DEMO_REFERENCE_S = 24 * 3600.0
"""The demo's reference: a clean day of the line with ``machine-health.toml``, the evaluated
configuration (chosen in session 10 by the rule in README.md: 0 false alarms over 12
machine-shifts of ``demo.yaml`` where one hour with the pinned spec gave 21, every fault flagged)."""


def demo_models(scenario: Scenario, seed: int) -> dict[str, AnomalyModel]:
    """The demo's models: :func:`reference_models` on :data:`DEMO_REFERENCE_S` with the
    equipment-health preset (picklable arguments: run in a worker process)."""
    return reference_models(scenario, seed, DEMO_REFERENCE_S, machine_health())


def clean_scenario(scenario: Scenario) -> Scenario:
    """The same line with no scheduled and no random faults."""
    return scenario.model_copy(update={"faults": [], "random_faults": RandomFaults()})


def _series(samples: list[Sample]) -> tuple[dict[str, pd.Series], pd.Series | None]:
    by_signal: dict[str, tuple[list[pd.Timestamp], list[object]]] = defaultdict(lambda: ([], []))
    for s in samples:
        ts, vals = by_signal[s.signal]
        ts.append(pd.Timestamp(s.ts))
        vals.append(s.value)
    numeric: dict[str, pd.Series] = {}
    state: pd.Series | None = None
    for name, (ts, vals) in by_signal.items():
        series = pd.Series(vals, index=pd.DatetimeIndex(ts), name=name)
        series = series[~series.index.duplicated(keep="last")]
        if name == sig.STATE:
            state = series
        elif name not in NOT_FEATURES and all(isinstance(v, int | float) and not isinstance(v, bool)
                                              for v in vals):
            numeric[name] = series.astype(float)
    return numeric, state


def reference_models(scenario: Scenario, seed: int, duration_s: float = 3600.0,
                     spec: ModelSpec | None = None, *, energy: bool = True) -> dict[str, AnomalyModel]:
    """Registry scope -> model fitted on ``duration_s`` of the fault-free line (seed ``seed`` +
    offset): each machine's health model and, with ``energy``, the energy model of each machine
    that reports ``power_kw`` (its kind's :data:`~analytics.simline.evaluate.LOAD_SIGNALS`). A model
    a machine has too little data for is left out (logged)."""
    kinds = {str(asset): m.kind for asset, m in scenario.machines()}
    by_asset: dict[str, list[Sample]] = defaultdict(list)
    for s in generate(clean_scenario(scenario), seed + REFERENCE_SEED_OFFSET, duration_s):
        by_asset[str(s.asset)].append(s)
    models: dict[str, AnomalyModel] = {}
    for asset, samples in by_asset.items():
        numeric, state = _series(samples)
        try:
            model, _ = fit_history(align(numeric, state), spec or default_spec())
            models[asset] = model
        except DataError as exc:
            log.warning("no anomaly model for %s: %s", asset, exc)
        wanted = [*LOAD_SIGNALS.get(kinds.get(asset, ""), ()), sig.POWER_KW]
        if not energy or not all(name in numeric for name in wanted):
            continue
        try:
            model, _ = fit_energy(align({n: numeric[n] for n in wanted}, state), energy_spec())
            models[model_scope(asset, ENERGY)] = model
        except DataError as exc:
            log.warning("no energy model for %s: %s", asset, exc)
    return models
