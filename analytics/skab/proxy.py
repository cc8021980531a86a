"""A SKAB-shaped benchmark built from the simulator: where SKAB settings are chosen, not on SKAB.

Every setting of the frozen SKAB configuration that is not fixed a priori is chosen here, on
simulated machines, never on SKAB labels or SKAB rows. The proxy copies only the *shape* of the
SKAB protocol as ``PROTOCOL.md`` states it (1 Hz, ~1,100 rows per run with one induced fault,
fit on the first 400 rows, about half of the test rows anomalous), not any SKAB data:

* One always-running machine of each kind (CNC, injection moulding, compressor, assembly; no
  breaks, breakdowns or pauses), simulated by the deterministic offline core.
* Every ``PERIOD_S`` seconds an *episode* of ``EPISODE_ROWS`` rows starts; one fault is injected
  at row ``U(FAULT_AT)`` for ``U(DURATION_S)`` seconds, its kind and size drawn from ``seed``:
  bearing wear (vibration ramp 3-12 mm/s per hour), overheating (+10-30 °C target), a stuck
  process sensor, and per kind tool wear (CNC) or an air leak (compressor, power +10-30 %).
  The gap between episodes (``PERIOD_S − EPISODE_ROWS``) lets the previous fault die away.
* Columns: the kind's process signals and ``power_kw``; labels: 1 while the ledger's fault is
  active; changepoints at the fault's first and last-plus-one row (as SKAB marks them).
* ``warm_start=True`` (the second proxy, :data:`WARM_SEEDS`): every episode but the first starts
  ``RESTART_LEAD_S`` seconds after the machine was back from ``U(BREAK_S)`` seconds off (a break
  in the calendar): fast signals have settled, slow ones (temperatures, τ 5-20 min) are still
  warming up through the training rows and beyond — the case where a 400-row training window has
  not seen a signal's normal range.
* Faults whose effect outlasts the ledger's end (``LINGERING``: an overheated machine cools with
  its thermal lag, a worn tool stays worn) end their episode at the fault's end: after it the
  simulator gives no ground truth (neither "normal" nor "fault" would be honest labels).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from analytics.skab.data import SkabFile

EPISODE_ROWS: Final = 1100
PERIOD_S: Final = 4000
FAULT_AT: Final = (500, 700)
DURATION_S: Final = (250, 450)
EPISODES_PER_MACHINE: Final = 20
PROXY_SEEDS: Final = (1, 2)
WARM_SEEDS: Final = (3, 4)
BREAK_S: Final = (600, 1800)
RESTART_LEAD_S: Final = 120
LINGERING: Final = ("overheating", "tool_wear")

_MACHINES: Final = {  # name -> (kind, faults that apply)
    "cnc": ("cnc", ("bearing_wear", "overheating", "sensor_stuck", "tool_wear")),
    "imm": ("injection_moulding", ("bearing_wear", "overheating", "sensor_stuck")),
    "comp": ("compressor", ("bearing_wear", "overheating", "sensor_stuck", "air_leak")),
    "pack": ("assembly", ("bearing_wear", "overheating", "sensor_stuck")),
}


@dataclass(frozen=True)
class ProxyRun:
    """One proxy episode, in the same shape as a SKAB file (``values`` columns are ``columns``)."""

    file: SkabFile
    columns: list[str]
    fault: str


def _params(kind: str, machine_kind: str, rng: random.Random) -> dict[str, float | str]:
    from simulator.kinds import KINDS

    if kind == "bearing_wear":
        return {"rate_per_h": round(rng.uniform(3.0, 12.0), 2)}
    if kind == "overheating":
        return {"delta": round(rng.uniform(10.0, 30.0), 1)}
    if kind == "air_leak":
        return {"extra_power": round(rng.uniform(0.1, 0.3), 3)}
    if kind == "tool_wear":
        return {"factor": round(rng.uniform(5.0, 10.0), 1)}
    signals = [s.name for s in KINDS[machine_kind].signals if not s.managed]
    return {"signal": rng.choice(signals)}


def _breaks(seed: int) -> list[dict[str, str]]:
    """A break ending ``RESTART_LEAD_S`` before each episode's start but the first."""
    rng = random.Random(f"skab-proxy-breaks:{seed}")
    out = []
    for e in range(1, EPISODES_PER_MACHINE):
        end = e * PERIOD_S - RESTART_LEAD_S
        start = end - rng.randint(*BREAK_S)
        out.append({"start": _clock(start), "end": _clock(end)})
    return out


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def scenario_doc(seed: int, warm_start: bool = False) -> dict[str, Any]:
    """The proxy scenario (machines and scheduled faults) for one seed."""
    rng = random.Random(f"skab-proxy:{seed}")
    machines: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    for name, (kind, kinds) in _MACHINES.items():
        m: dict[str, Any] = {"name": name, "kind": kind, "setup_s": 0, "mtbf_s": 0, "idle_every_s": 0,
                             "micro_stop_prob": 0}
        if kind != "compressor":
            m["products"] = [{"name": "p", "ideal_cycle_time_s": 60, "batch_size": 1_000_000}]
        machines.append(m)
        for e in range(EPISODES_PER_MACHINE):
            fk = rng.choice(kinds)
            faults.append({"machine": f"l/{name}", "kind": fk,
                           "at": e * PERIOD_S + rng.randint(*FAULT_AT),
                           "duration_s": rng.randint(*DURATION_S),
                           "params": _params(fk, kind, rng)})
    return {"name": "skab-proxy", "site": "p", "area": "a", "start": "2026-11-23T00:00:00+00:00",
            "tick_s": 1.0,
            "calendar": {"timezone": "UTC",
                         "shifts": [{"name": "all", "start": "00:00:00", "end": "00:00:00",
                                     "breaks": _breaks(seed) if warm_start else []}]},
            "lines": [{"name": "l", "machines": machines}], "faults": faults}


def proxy_runs(seeds: Sequence[int] = PROXY_SEEDS, warm_start: bool = False) -> list[ProxyRun]:
    """Every episode of every machine for ``seeds`` (deterministic)."""
    from analytics.simline.frames import simulate
    from simulator.kinds import KINDS
    from simulator.scenario import scenario_from_dict

    out: list[ProxyRun] = []
    tag = "w" if warm_start else ""
    for seed in seeds:
        doc = scenario_doc(seed, warm_start)
        run = simulate(scenario_from_dict(doc), seed, EPISODES_PER_MACHINE * PERIOD_S)
        t0 = run.machines[next(iter(run.machines))].index[0]
        for asset, df in run.machines.items():
            name = asset.rsplit("/", 1)[1]
            kind = _MACHINES[name][0]
            cols = [*KINDS[kind].signal_names, "power_kw"]
            X = df[cols].astype(float).ffill().bfill().to_numpy()
            ts = ((df.index - t0).total_seconds()).to_numpy().astype(np.int64)
            mine = [f for f in run.faults() if f["machine"] == asset]
            for e, f in enumerate(mine):
                a = e * PERIOD_S
                s = int((pd.Timestamp(f["start"]) - t0).total_seconds()) - a
                d = int((pd.Timestamp(f["end"]) - t0).total_seconds()) - a
                n = min(d, EPISODE_ROWS) if f["kind"] in LINGERING else EPISODE_ROWS
                lab = np.zeros(n, dtype=np.int64)
                lab[s:d] = 1
                cp = np.zeros(n, dtype=np.int64)
                cp[s] = 1
                if d < n:
                    cp[d] = 1
                sl = slice(a, a + n)
                out.append(ProxyRun(
                    file=SkabFile(name=f"proxy{tag}{seed}/{name}/{e}", ts=ts[sl], values=X[sl],
                                  anomaly=lab, changepoint=cp),
                    columns=cols, fault=str(f["kind"])))
    return out
