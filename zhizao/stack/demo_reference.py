"""How long a reference the demo's models need: in-scope faults flagged and false alarms of the
demo line's health and energy models, per candidate (model spec x reference length), over seeds.

``python -m zhizao.stack.demo_reference A 131,132,133`` prints one JSON object. It runs the code
path of ``zhizao analytics eval sim`` (:func:`analytics.simline.evaluate.machine_flags`, its
debounced episodes) on 8-hour shifts of ``zhizao/stack/scenarios/demo.yaml`` with its random
faults on, as the demo has them. The choice it informed is written down in ``README.md``
(Kubernetes section: candidates A-D, dev seeds 131-133, held-out 141-143).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from analytics.scoring.presets import machine_health
from analytics.simline.evaluate import OUT_OF_SCOPE, SimEvalConfig, _episodes, contexts, machine_flags
from analytics.simline.frames import simulate
from simulator.scenario import load_scenario
from zhizao.stack.models import default_spec

CANDIDATES: dict[str, tuple[Callable[..., object], int]] = {
    "A": (default_spec, 1), "B": (default_spec, 8), "C": (machine_health, 8), "D": (machine_health, 24),
}
"""Candidate -> (health model spec, reference hours)."""

SHIFT_S = 8 * 3600


def evaluate(candidate: str, seeds: list[int]) -> dict[str, object]:
    """Faults flagged (in scope), the ones missed, false alarms per model and the most in one
    machine-shift, for ``candidate`` over ``seeds``."""
    spec, ref_h = CANDIDATES[candidate]
    scenario = load_scenario(Path(__file__).parent / "scenarios" / "demo.yaml")
    cfg = SimEvalConfig(reference_hours=ref_h, shift_hours=SHIFT_S / 3600, health=spec())
    grace = pd.Timedelta(seconds=cfg.grace_s)
    false_alarms = {"health": 0, "energy": 0}
    per_machine_shift: list[int] = []
    faults = flagged = 0
    missed: list[tuple[int, str, str]] = []
    for seed in seeds:
        ref = simulate(scenario, seed + 100_003, ref_h * 3600, faults=False)
        test = simulate(scenario, seed, SHIFT_S)
        for asset, df in test.machines.items():
            mine = [f for f in test.faults() if f["machine"] == asset]
            windows = [(pd.Timestamp(f["start"]), pd.Timestamp(f["end"])) for f in mine]
            observed = {"health": contexts(df, False) != ""}
            flags = machine_flags(ref.machines[asset], df, test.kinds[asset], cfg)
            episodes = {name: _episodes(df.index, fl.flag, cfg, observed.get(name))
                        for name, fl in flags.items()}
            here = 0
            for name, eps in episodes.items():
                n = sum(1 for ep in eps if not any(ep.start <= fe + grace and (ep.end is None or ep.end >= fs)
                                                   for fs, fe in windows))
                false_alarms[name] += n
                here += n
            per_machine_shift.append(here)
            for f, (fs, fe) in zip(mine, windows, strict=True):
                if f["kind"] in OUT_OF_SCOPE:
                    continue
                faults += 1
                raised = [ep for eps in episodes.values() for ep in eps]
                if any(ep.raised < fe and (ep.end is None or ep.end >= fs) for ep in raised):
                    flagged += 1
                else:
                    missed.append((seed, str(asset).rsplit("/", 1)[-1], str(f["kind"])))
    return {"candidate": candidate, "seeds": seeds, "faults": faults, "flagged": flagged, "missed": missed,
            "false_alarms": false_alarms, "max_per_machine_shift": max(per_machine_shift, default=0),
            "machine_shifts": len(per_machine_shift)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zhizao.stack.demo_reference", description=__doc__)
    parser.add_argument("candidate", choices=sorted(CANDIDATES))
    parser.add_argument("seeds", help="comma-separated, e.g. 131,132,133")
    args = parser.parse_args(argv)
    print(json.dumps(evaluate(args.candidate, [int(s) for s in args.seeds.split(",")])))


if __name__ == "__main__":
    main()
