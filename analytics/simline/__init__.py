"""Evaluation on the simulated line (offline simulator core + its ground-truth fault ledger)."""

from analytics.simline.evaluate import OUT_OF_SCOPE, SimEvalConfig, evaluate_seed, summarise
from analytics.simline.frames import SimRun, simulate

__all__ = ["OUT_OF_SCOPE", "SimEvalConfig", "SimRun", "evaluate_seed", "simulate", "summarise"]
