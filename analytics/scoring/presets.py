"""Named model specifications that ship with zhizao, each defined once, in a commented TOML file
beside its detector (what ``zhizao analytics train --config`` takes too).

``machine_health()``: the equipment-health model validated on the simulated line
(``analytics/README.md``, "Simulated line"): robust z, max over features, on 5-s means and 60-s
and 300-s mean |Δ|, every row scored after a restart (``settle="median"``).

``energy()``: the expected-power model the simulated-line evaluation scores (air leak caught on
every seed, ``analytics/README.md``): ``expected_power`` with its sample configuration's values
(the detector's defaults), on 5-s means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from analytics.scoring.model import ModelSpec
from zhizao.config import load_config

_DETECTORS: Final = Path(__file__).resolve().parents[1] / "detectors"
MACHINE_HEALTH: Final = _DETECTORS / "robust_z" / "machine-health.toml"
ENERGY: Final = _DETECTORS / "expected_power" / "sample.toml"


def machine_health() -> ModelSpec:
    """The equipment-health :class:`ModelSpec` of ``MACHINE_HEALTH``."""
    return load_config(ModelSpec, MACHINE_HEALTH)


def energy() -> ModelSpec:
    """The energy :class:`ModelSpec` of ``ENERGY``."""
    return load_config(ModelSpec, ENERGY)
