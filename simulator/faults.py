"""Fault episodes: scheduled ones from the scenario and random ones drawn from the run seed.

An episode covers ticks ``[start_tick, end_tick)``. Times are simulated (never wall time).
Defaults of each kind's ``params`` are filled in here so the ledger records what was applied.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from simulator.kinds import KINDS, PROCESS_FAULT_KINDS
from simulator.scenario import FaultConfig, Scenario

DEFAULT_PARAMS: dict[str, dict[str, float | str]] = {
    "bearing_wear": {"rate_per_h": 1.5},
    "overheating": {"delta": 30.0},
    "air_leak": {"extra_power": 0.3},
    "tool_wear": {"factor": 5.0},
    "sensor_stuck": {},
    "sensor_dropout": {},
    "maintenance_step": {"delta": -0.5},
    "clock_skew": {"offset_s": 90.0},
    "counter_reset": {},
}
"""bearing_wear: vibration_rms rises ``rate_per_h`` mm/s per hour while rotating;
overheating: heat signals' targets rise linearly to ``delta`` degC at the end;
air_leak: compressor power x (1 + ``extra_power``) in every state but off, nothing else changes;
tool_wear: tool wear per part x ``factor`` and worn tools are not changed while it lasts;
sensor_stuck / sensor_dropout: ``signal`` frozen / not updated (quality bad);
maintenance_step: the machine is in ``setup:maintenance`` while it lasts, then ``signal`` steps by ``delta``;
clock_skew: the machine reports timestamps offset by ``offset_s``;
counter_reset: parts and energy counters restart from 0 at the start (once)."""

SENSOR_KINDS = ("sensor_stuck", "sensor_dropout", "maintenance_step")


@dataclass(frozen=True, slots=True)
class FaultEpisode:
    machine: int
    """Index of the machine in scenario order."""
    kind: str
    start: datetime
    end: datetime
    start_tick: int
    end_tick: int
    params: dict[str, float | str] = field(default_factory=dict)


def tick_of(scenario: Scenario, ts: datetime) -> int:
    """Index of the first tick at or after ``ts``."""
    x = (ts - scenario.start).total_seconds() / scenario.tick_s
    r = round(x)
    return r if abs(x - r) < 1e-6 else int(x) + (1 if x > 0 else 0)


def _episode(
    scenario: Scenario,
    machine: int,
    kind: str,
    *,
    start: datetime,
    duration_s: float,
    params: dict[str, float | str],
) -> FaultEpisode:
    merged = {**DEFAULT_PARAMS[kind], **params}
    end = start + timedelta(seconds=duration_s)
    return FaultEpisode(machine, kind, start, end, tick_of(scenario, start), tick_of(scenario, end), merged)


def scheduled_faults(scenario: Scenario) -> list[FaultEpisode]:
    index = {f"{a.line}/{a.machine}": i for i, (a, _) in enumerate(scenario.machines())}
    out: list[FaultEpisode] = []
    for f in scenario.faults:
        out.append(_scheduled(scenario, index[f.machine], f))
    return out


def _scheduled(scenario: Scenario, machine: int, f: FaultConfig) -> FaultEpisode:
    return _episode(
        scenario,
        machine,
        f.kind,
        start=scenario.fault_start(f),
        duration_s=f.duration_s,
        params=dict(f.params),
    )


def random_faults(scenario: Scenario, seed: int, end: datetime) -> list[FaultEpisode]:
    """Faults drawn per machine from ``Random(f"{seed}:{asset}:faults")`` (independent streams)."""
    cfg = scenario.random_faults
    if cfg.per_machine_per_day <= 0:
        return []
    mean_gap = 86400.0 / cfg.per_machine_per_day
    out: list[FaultEpisode] = []
    for i, (asset, machine) in enumerate(scenario.machines()):
        rng = random.Random(f"{seed}:{asset}:faults")
        spec = KINDS[machine.kind]
        kinds = [k for k in cfg.kinds if k in PROCESS_FAULT_KINDS[machine.kind]]
        if not kinds:
            continue
        t = scenario.start
        while True:
            t = t + timedelta(seconds=round(rng.expovariate(1.0 / mean_gap), 0))
            if t >= end:
                break
            kind = rng.choice(kinds)
            duration = max(60.0, round(rng.expovariate(1.0 / cfg.duration_s), 0))
            params: dict[str, float | str] = {}
            if kind in SENSOR_KINDS:
                params["signal"] = rng.choice([s.name for s in spec.signals if not s.managed])
            out.append(_episode(scenario, i, kind, start=t, duration_s=duration, params=params))
            t = t + timedelta(seconds=duration)
    return out


def all_faults(scenario: Scenario, seed: int, end: datetime) -> list[FaultEpisode]:
    """Scheduled and random faults starting before ``end``, ordered by (start, machine, kind)."""
    faults = [f for f in scheduled_faults(scenario) + random_faults(scenario, seed, end) if f.start < end]
    faults.sort(key=lambda f: (f.start, f.machine, f.kind))
    return faults
