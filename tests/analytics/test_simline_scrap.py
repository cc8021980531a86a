"""Scrap prediction on the simulated line: ROC AUC >= 0.85 on a held-out shift (issue 7).

The scrap part of ``zhizao analytics eval sim`` for one seed, nothing else: per part-making
machine, a :class:`~analytics.detectors.quality.ScrapModel` trained on the cycles of a
fault-free reference run (seed + ``reference_seed_offset``, ``reference_hours``, as the eval
does) scores every cycle of a *different* seed's full 8-hour shift (the example scenario with its
faults); the AUC is over the cycles of every modelled machine, pooled. Each simulated machine
draws from its own ``random.Random(f"{seed}:{asset}")``, so leaving the compressors out (they
make no parts) changes no figure.

The seed (7) was fixed before the model's current form was chosen; the choice was made on
seeds 1-5 only (see analytics/README.md, "Simulated line").
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analytics.simline import SimEvalConfig, simulate
from analytics.simline.evaluate import SeedResult, cycles, scrap_auc, scrap_scores, summarise

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


def part_makers() -> Any:
    from simulator.kinds import KINDS
    from simulator.scenario import scenario_from_dict

    doc = tomllib.loads((ROOT / "examples" / "workshop.toml").read_text())
    for line in doc["lines"]:
        line["machines"] = [m for m in line["machines"] if KINDS[m["kind"]].makes_parts]
    names = {f"{line['name']}/{m['name']}" for line in doc["lines"] for m in line["machines"]}
    doc["faults"] = [f for f in doc["faults"] if f["machine"] in names]
    return scenario_from_dict(doc)


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~25 s of CPU (7 machines: 24 h reference + 8 h shift); longer on a busy box
def test_scrap_auc_on_a_held_out_shift() -> None:
    cfg = SimEvalConfig()
    scenario = part_makers()
    ref = simulate(scenario, SEED + cfg.reference_seed_offset, cfg.reference_hours * 3600, faults=False)
    test = simulate(scenario, SEED, cfg.shift_hours * 3600)
    assert cfg.shift_hours == 8.0
    scored = {a: s for a, df in test.machines.items()
              if (s := scrap_scores(ref.machines[a], df, test.kinds[a], cfg)) is not None}
    # every moulding machine is modelled (its reference has >= min_scrap_parts scrap parts)
    moulding = {a for a, k in test.kinds.items() if k == "injection_moulding"}
    assert moulding <= set(scored), sorted(scored)
    y = np.concatenate([s[0] for s in scored.values()])
    assert y.sum() >= 50, f"only {y.sum()} scrap parts in the shift: too few for a stable AUC"
    auc = scrap_auc(list(scored.values()))
    per_machine = {a: (int(s[0].sum()), len(s[0])) for a, s in scored.items()}
    assert auc is not None and auc >= 0.85, (auc, per_machine)


def test_a_cycle_is_the_row_before_its_counter_moves() -> None:
    idx = pd.date_range("2026-01-01", periods=6, freq="1s", tz="UTC")
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                       "parts_total": [0, 0, 1, 1, 2, 2], "parts_scrap": [0, 0, 0, 0, 1, 1]}, index=idx)
    X, y = cycles(df, ["x"])
    assert X[:, 0].tolist() == [2.0, 4.0]  # the values the parts were made under, not the next tick's
    assert y.tolist() == [0, 1]


def test_summary_gives_the_auc_pooled_and_per_seed() -> None:
    def seed(n: int, y: list[int], p: list[float]) -> SeedResult:
        return SeedResult(n, [], {}, np.array(y), np.array(p))

    s = summarise([seed(1, [0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]), seed(2, [0, 1], [0.6, 0.4]),
                   seed(3, [], [])], 8.0)
    assert s["scrap_roc_auc_per_seed"] == {1: 1.0, 2: 0.0, 3: None}
    assert s["scrap_roc_auc"] == scrap_auc([(np.array([0, 1, 0, 1, 0, 1]),
                                             np.array([0.1, 0.9, 0.2, 0.8, 0.6, 0.4]))])
