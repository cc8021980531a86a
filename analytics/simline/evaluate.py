"""Evaluation on the simulated line against the simulator's ground-truth fault ledger.

Per seed: a fault-free *reference* run (seed + ``reference_seed_offset``, ``reference_hours``)
trains, per machine, (1) an equipment-health model on its process signals in the ``running``
state, (2) an expected-power (energy) model of ``power_kw`` from state + load signals and
(3) for part-making machines, a scrap model per completed cycle. The *test* run (the scenario
with its faults, ``shift_hours``) is then scored online; the health model restarts its windows
each time the machine re-enters ``running`` (a machine warming up after a break is not compared
across the break). A flag becomes an episode through the shared debounced
:class:`~analytics.events.EpisodeTracker` (``open_after_s``, ``clear_after_s``).

* A fault episode of an in-scope kind is *detected* when a model of its machine raises an alarm
  (the tracker opens an episode, ``open_after_s`` after the condition first held) before the
  fault ends, for an episode overlapping the fault; time-to-detect = max(alarm raised, fault
  start) − fault start (until session 9 it was counted from the episode's start, the first
  flagged tick: ``open_after_s`` less).
  The health model's tracker observes the ticks it scores only (the live scorer's behaviour): a
  stop neither opens nor clears its episodes.
* A *false alarm* is an episode overlapping no fault of that machine (nor the ``grace_s`` after one).
* Scrap: ROC AUC of the scrap probabilities of every cycle of the test run (per machine model,
  pooled over machines; in the summary pooled over seeds and per seed), labels from the
  ``parts_scrap`` counter, features from the tick before the counter moves (:func:`cycles`);
  only machines whose reference run had at least ``min_scrap_parts`` scrap parts get a model.

Out of scope (``OUT_OF_SCOPE``): faults that are data-quality or bookkeeping events, not machine
behaviour — handled by the KPI engine's data-quality flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.metrics import roc_auc_score

from analytics.detectors.quality import ScrapModel
from analytics.events import (
    ANOMALY_CLEAR_AFTER_S,
    ANOMALY_HOLD_ACROSS_GAPS,
    ANOMALY_OPEN_AFTER_S,
    EpisodeTracker,
)
from analytics.events.tracker import RAISED_AT
from analytics.scoring import AnomalyModel, ModelSpec, piece_starts
from analytics.scoring.context import design, state_columns
from analytics.scoring.presets import energy, machine_health
from analytics.simline.frames import SimRun, simulate
from zhizao.config import StrictModel
from zhizao.events import Event, EventSource, EventState
from zhizao.signals import POWER_KW
from zhizao.wire import parse_ts

OUT_OF_SCOPE: Final = {
    "clock_skew": "timestamps offset: a data-quality flag of the KPI engine, not machine behaviour",
    "counter_reset": "counter bookkeeping: handled by the KPI counters (reset detection)",
    "maintenance_step": "the machine is in setup (not scored) while it lasts; the level step after it "
                        "is the new normal after maintenance",
}


LOAD_SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "cnc": ("spindle_load",), "injection_moulding": ("melt_temp", "motor_current"),
    "compressor": ("air_flow",), "assembly": ("motor_current",)}
"""Per simulated machine kind: the signals its expected power depends on, besides the state (the
energy model's load columns here and in the one-box stack)."""


class SimEvalConfig(StrictModel):
    """Hyper-parameters, fixed once for every machine and seed."""

    shift_hours: float = Field(8.0, gt=0)
    reference_hours: float = Field(24.0, gt=0)
    reference_seed_offset: int = 1000
    health: ModelSpec = Field(default_factory=machine_health)
    """The equipment-health model (:func:`analytics.scoring.presets.machine_health`; chosen in
    session 7 on seeds 11-13 by a rule fixed in advance, analytics/README.md)."""
    energy: ModelSpec = Field(default_factory=energy)
    load_signals: dict[str, list[str]] = Field(
        default_factory=lambda: {kind: list(names) for kind, names in LOAD_SIGNALS.items()})
    """Per machine kind: the signals expected power depends on (besides state)."""
    open_after_s: float = ANOMALY_OPEN_AFTER_S
    clear_after_s: float = ANOMALY_CLEAR_AFTER_S
    """The debounce the scoring service and the one-box stack default to (one value for all)."""
    hold_across_gaps: bool = ANOMALY_HOLD_ACROSS_GAPS
    """The anomaly debounce's timers pause through a stop instead of restarting
    (:attr:`analytics.events.EpisodeTracker.hold_across_gaps`)."""
    grace_s: float = 600.0
    health_by_product: bool = False
    """Health model per product: a machine's running ticks are compared only with running ticks
    of the same product (one model per product; see :func:`health_flags`)."""
    min_context_rows: int = Field(1800, ge=2)
    """Reference running rows a product needs for a model of its own (else the all-products one)."""
    min_scrap_parts: int = Field(20, ge=2)
    """A machine gets a scrap model only if its reference run has at least this many scrap parts
    (a classifier learned from a handful of examples is not deployed)."""


@dataclass
class FaultResult:
    seed: int
    machine: str
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp
    detected_by: list[str] = field(default_factory=list)
    ttd_s: float | None = None


@dataclass
class SeedResult:
    seed: int
    faults: list[FaultResult]
    false_alarms: dict[str, int]
    scrap_y: np.ndarray
    scrap_p: np.ndarray


def _matrix(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    return np.asarray(df[cols].astype(float).ffill().bfill().fillna(0.0).to_numpy())


class Episode(NamedTuple):
    start: pd.Timestamp
    """When the condition first held (the event's ``start``)."""
    end: pd.Timestamp | None
    """When it first cleared for good (None: still open at the end of the run)."""
    raised: pd.Timestamp
    """When the alarm went out: the tracker emitted the open event, ``open_after_s`` later."""


def _episodes(index: pd.DatetimeIndex, flag: np.ndarray, cfg: SimEvalConfig,
              scored: np.ndarray | None = None) -> list[Episode]:
    """Each episode the debounced tracker makes of ``flag``, observing the ticks the live
    :class:`~analytics.scoring.live.MachineScorer` would: only those where ``scored`` is true; the
    first of each run of scored ticks (a return to running) is a ``resumed`` observation. A stop
    thus neither opens nor clears an episode, and the debounce timers restart after it."""
    resumed = np.zeros(len(index), dtype=bool)
    if scored is not None:
        scored = np.asarray(scored, dtype=bool)
        resumed = piece_starts(scored).copy()
        resumed[:1] = False  # the first observation follows nothing
        index, flag = index[scored], np.asarray(flag)[scored]
    tracker = EpisodeTracker(source=EventSource.ANOMALY, rule="eval", open_after_s=cfg.open_after_s,
                             clear_after_s=cfg.clear_after_s, hold_across_gaps=cfg.hold_across_gaps)
    out: list[Episode] = []

    def observe(i: int) -> None:
        for e in tracker.observe("m", index[i].to_pydatetime(), bool(flag[i]), 1.0, resumed=bool(resumed[i])):
            if e.state is EventState.RESOLVED:
                out.append(_episode(e))

    # only the flag's changes and the resumptions move the tracker; between two of them the flag
    # holds, and the debounce needs it re-observed when its timer is due (tracker.due); the last
    # tick before a resumption is observed too: the tracker measures a stretch from it
    keys = np.flatnonzero((np.diff(np.r_[False, flag]) != 0) | resumed | np.r_[resumed[1:], False])
    for n, i in enumerate(keys):
        observe(int(i))
        nxt = keys[n + 1] if n + 1 < len(keys) else len(index)
        j = int(i)
        while (due := tracker.due("m")) is not None:
            j = max(j + 1, int(np.searchsorted(index, pd.Timestamp(due))))
            if j >= nxt:
                break
            observe(j)
    out += [_episode(e) for e in tracker.open_events()]
    return out


def _episode(e: Event) -> Episode:
    """The episode of a tracker event; raised = ``details.raised_at`` (when the alarm went out)."""
    return Episode(pd.Timestamp(e.start), None if e.end is None else pd.Timestamp(e.end),
                   pd.Timestamp(parse_ts(e.details[RAISED_AT])))


def contexts(df: pd.DataFrame, by_product: bool) -> np.ndarray:
    """Per tick, the operating context the health model compares it in: ``"running"`` (or
    ``"running|<product>"`` with ``by_product``) while running, ``""`` (not scored) otherwise."""
    run = (df["state"].ffill() == "running").to_numpy()
    if by_product and "product" in df:
        label = "running|" + df["product"].ffill().fillna("").astype(str).to_numpy().astype(object)
    else:
        label = np.full(len(df), "running", dtype=object)
    return np.where(run, label, "")


class Flags(NamedTuple):
    flag: np.ndarray
    """The model's online flag per tick."""
    warming: np.ndarray
    """Ticks in the model's warm-up after a (re)start (:attr:`AnomalyModel.warmup_rows`)."""


def health_flags(ref: pd.DataFrame, test: pd.DataFrame, cols: list[str], cfg: SimEvalConfig) -> np.ndarray:
    """The health model's online flag per tick of ``test`` (:func:`health_scores`)."""
    return health_scores(ref, test, cols, cfg).flag


def health_scores(ref: pd.DataFrame, test: pd.DataFrame, cols: list[str], cfg: SimEvalConfig) -> Flags:
    """The health model's online flag per tick of ``test``: each tick is scored only by the model
    of its context (:func:`contexts`), its windows restarting whenever the machine re-enters that
    context. A context with fewer than ``min_context_rows`` reference rows (a product the
    reference did not make enough of) is scored by the machine's all-products running model."""
    Xr, Xt = _matrix(ref, cols), _matrix(test, cols)
    cr, ct = contexts(ref, cfg.health_by_product), contexts(test, cfg.health_by_product)
    flag = np.zeros(len(test), dtype=bool)
    warming = np.zeros(len(test), dtype=bool)
    run_r = cr != ""
    if not run_r.any() or not (ct != "").any():
        return Flags(flag, warming)
    pooled = AnomalyModel(spec=cfg.health).fit(Xr[run_r], columns=cols, resets=piece_starts(run_r))
    for c in sorted(set(ct.tolist()) - {""}):
        here = ct == c
        n_ref = int((cr == c).sum())
        model = (AnomalyModel(spec=cfg.health).fit(Xr[cr == c], columns=cols, resets=piece_starts(cr == c))
                 if c != "running" and n_ref >= cfg.min_context_rows else pooled)
        chunk = model.stream().push(Xt[here], resets=piece_starts(here))
        flag[here] = chunk.flag
        assert chunk.warming is not None
        warming[here] = chunk.warming
    return Flags(flag, warming)


def machine_flags(ref: pd.DataFrame, test: pd.DataFrame, kind: str,
                  cfg: SimEvalConfig) -> dict[str, Flags]:
    """Per model ("health", "energy"): the online 0/1 flag of every tick of ``test``."""
    from simulator.kinds import KINDS

    health = health_scores(ref, test, list(KINDS[kind].signal_names), cfg)
    load = [*cfg.load_signals.get(kind, []), POWER_KW]
    ctx_cols = [*state_columns(), *load]  # as zhizao analytics train --model energy builds them

    def rows(df: pd.DataFrame) -> np.ndarray:
        return design(ctx_cols, load, _matrix(df, load), df["state"].ffill().to_numpy(dtype=object))

    emodel = AnomalyModel(spec=cfg.energy, states="all").fit(rows(ref), columns=ctx_cols)
    energy = emodel.stream().push(rows(test))
    assert energy.warming is not None
    return {"health": health, "energy": Flags(energy.flag, energy.warming)}


def cycles(df: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(process signals each completed part was made under, 1 if that part was scrap).

    A part's row is the last tick *before* the ``parts_total`` counter moves: the simulator
    reports a tick's counters after the part completed in it, decided by the process values it
    reported the tick before (the row where the counter moves already holds the next tick's
    values). Every feature is known before the part's counter is.
    """
    total = df["parts_total"].astype(float).ffill().fillna(0.0).to_numpy()
    scrap = df["parts_scrap"].astype(float).ffill().fillna(0.0).to_numpy()
    done = np.flatnonzero(np.diff(total, prepend=total[0]) > 0)
    y = (np.diff(scrap, prepend=scrap[0])[done] > 0).astype(int)
    return _matrix(df, cols)[np.maximum(done - 1, 0)], y


def scrap_scores(ref: pd.DataFrame, test: pd.DataFrame, kind: str,
                 cfg: SimEvalConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(scrap labels, scrap probabilities) of every cycle of ``test`` from a :class:`ScrapModel`
    fitted on ``ref``'s cycles — or None when the machine makes no parts or its reference has
    fewer than ``min_scrap_parts`` scrap parts (no model is deployed)."""
    from simulator.kinds import KINDS

    spec = KINDS[kind]
    if not spec.makes_parts:
        return None
    Xr, yr = cycles(ref, list(spec.signal_names))
    Xt, yt = cycles(test, list(spec.signal_names))
    if int(yr.sum()) < cfg.min_scrap_parts or len(set(yr.tolist())) < 2 or not len(yt):
        return None
    return yt, ScrapModel().fit(Xr, yr).scrap_probability(Xt)


def scrap_auc(scored: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """ROC AUC of the per-machine scrap probabilities pooled over machines (None without both classes)."""
    if not scored:
        return None
    y = np.concatenate([s[0] for s in scored])
    p = np.concatenate([s[1] for s in scored])
    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None


def evaluate_seed(scenario: Any, seed: int, cfg: SimEvalConfig,
                  reference: SimRun | None = None) -> SeedResult:
    ref = reference or simulate(scenario, seed + cfg.reference_seed_offset, cfg.reference_hours * 3600,
                                faults=False)
    test = simulate(scenario, seed, cfg.shift_hours * 3600)
    results: list[FaultResult] = []
    false_alarms: dict[str, int] = {}
    ys, ps = [], []
    for asset, df in test.machines.items():
        kind = test.kinds[asset]
        mine = [f for f in test.faults() if f["machine"] == asset]
        windows = [(pd.Timestamp(f["start"]), pd.Timestamp(f["end"])) for f in mine]
        flags = machine_flags(ref.machines[asset], df, kind, cfg)
        observed = {"health": contexts(df, cfg.health_by_product) != "",  # energy: every tick
                    "energy": np.ones(len(df), dtype=bool)}
        if cfg.hold_across_gaps:  # as the live scorer: a warm-up after a restart is not observed
            observed = {name: seen & ~(flags[name].warming & ~flags[name].flag)
                        for name, seen in observed.items()}
        eps = {name: _episodes(df.index, fl.flag, cfg, None if name == "energy" and not cfg.hold_across_gaps
                               else observed[name]) for name, fl in flags.items()}
        for f, (fs, fe) in zip(mine, windows, strict=True):
            if f["kind"] in OUT_OF_SCOPE:
                continue
            r = FaultResult(seed, asset, f["kind"], fs, fe)
            for name, es in eps.items():
                # the alarm must go out before the fault ends; detected at max(raised, fault start)
                hits = [max(ep.raised, fs) for ep in es
                        if ep.raised < fe and (ep.end is None or ep.end >= fs)]
                if hits:
                    r.detected_by.append(name)
                    ttd = (min(hits) - fs).total_seconds()
                    r.ttd_s = ttd if r.ttd_s is None else min(r.ttd_s, ttd)
            results.append(r)
        grace = pd.Timedelta(seconds=cfg.grace_s)
        false_alarms[asset] = sum(
            1 for es in eps.values() for ep in es
            if not any(ep.start <= fe + grace and (ep.end is None or ep.end >= fs) for fs, fe in windows))
        scored = scrap_scores(ref.machines[asset], df, kind, cfg)
        if scored is not None:
            ys.append(scored[0])
            ps.append(scored[1])
    return SeedResult(seed, results, false_alarms,
                      np.concatenate(ys) if ys else np.array([]), np.concatenate(ps) if ps else np.array([]))


def summarise(results: list[SeedResult], shift_hours: float) -> dict[str, Any]:
    faults = [f for r in results for f in r.faults]
    detected = [f for f in faults if f.detected_by]
    ttd = [f.ttd_s for f in detected if f.ttd_s is not None]
    fa = [v for r in results for v in r.false_alarms.values()]
    y = np.concatenate([r.scrap_y for r in results])
    p = np.concatenate([r.scrap_p for r in results])
    leaks = [f for f in faults if f.kind == "air_leak"]
    return {
        "seeds": [r.seed for r in results],
        "fault_episodes": len(faults), "detected": len(detected),
        "detected_share": len(detected) / len(faults) if faults else 0.0,
        "median_ttd_s": float(np.median(ttd)) if ttd else None,
        "max_false_alarms_per_machine_shift": max(fa) / (shift_hours / 8.0) if fa else 0.0,
        "false_alarms_total": int(sum(fa)), "machine_shifts": len(fa),
        "air_leak_by_energy": f"{sum('energy' in f.detected_by for f in leaks)}/{len(leaks)}",
        "scrap_roc_auc": scrap_auc([(y, p)]),
        "scrap_roc_auc_per_seed": {r.seed: scrap_auc([(r.scrap_y, r.scrap_p)]) for r in results},
        "scrap_cycles": len(y), "scrap_parts": int(y.sum()),
        "by_kind": {k: f"{sum(1 for f in faults if f.kind == k and f.detected_by)}/"
                       f"{sum(1 for f in faults if f.kind == k)}" for k in sorted({f.kind for f in faults})},
    }
