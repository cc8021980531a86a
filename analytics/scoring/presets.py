"""Named model specifications that ship with zhizao, each defined once, in a commented TOML file
beside its detector (what ``zhizao analytics train --config`` takes too).

``machine_health()``: the equipment-health model validated on the simulated line
(``analytics/README.md``, "Simulated line"): robust z, max over features, on 5-s means and 60-s
and 300-s mean |Δ|, every row scored after a restart (``settle="median"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from analytics.scoring.model import ModelSpec
from zhizao.config import load_config

MACHINE_HEALTH: Final = Path(__file__).resolve().parents[1] / "detectors" / "robust_z" / "machine-health.toml"


def machine_health() -> ModelSpec:
    """The equipment-health :class:`ModelSpec` of ``MACHINE_HEALTH``."""
    return load_config(ModelSpec, MACHINE_HEALTH)
