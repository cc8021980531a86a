"""The simulated line as per-machine tables: one row per tick, every signal's latest value.

Runs the simulator's deterministic offline core (:class:`simulator.engine.Simulation`; no
servers) and pivots each machine's emissions into columns, carrying a signal's last value
forward (state and counters are reported on change). Bad-quality values (a dropped-out sensor)
are kept as NaN so the consumer decides (the scorers carry the last good value forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zhizao.model import Quality


@dataclass
class SimRun:
    """One simulated run: ``machines[asset] = DataFrame`` (index: tick timestamps, UTC) and the ledger."""

    machines: dict[str, pd.DataFrame]
    ledger: list[dict[str, Any]]
    kinds: dict[str, str]

    def faults(self) -> list[dict[str, Any]]:
        return [r for r in self.ledger if r.get("type") == "fault"]


def simulate(scenario: Any, seed: int, duration_s: float, *, faults: bool = True) -> SimRun:
    """Run ``scenario`` offline; ``faults=False`` removes scheduled and random faults (a reference run)."""
    from simulator.engine import Simulation

    sc = scenario
    if not faults:
        sc = scenario.model_copy(update={"faults": [],
                                         "random_faults": scenario.random_faults.model_copy(
                                             update={"per_machine_per_day": 0.0})})
    sim = Simulation(sc, seed, duration_s)
    assets = [str(a) for a in sim.assets]
    current: list[dict[str, Any]] = [{} for _ in assets]
    rows: list[list[dict[str, Any]]] = [[] for _ in assets]
    stamps: list[Any] = []
    for tick in sim.ticks():
        stamps.append(tick.ts)
        for k, out in enumerate(tick.emissions):
            cur = current[k]
            for name, value, quality in out:
                cur[name] = value if quality is Quality.GOOD else np.nan
            rows[k].append(dict(cur))
    index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True))
    machines = {a: pd.DataFrame(r, index=index) for a, r in zip(assets, rows, strict=True)}
    kinds = {str(a): m.kind for a, m in sc.machines()}
    return SimRun(machines=machines, ledger=sim.ledger(), kinds=kinds)
