"""Well-known signal names every machine of the line publishes, and machine states.

The simulator produces them, the agent carries them unchanged, KPIs and dashboards read them.
Process signals (``melt_temp``, ``vibration_rms`` ...) are free-form; these are the contract.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

STATE: Final = "state"
"""str, one of :class:`MachineState` values."""
STATE_REASON: Final = "state_reason"
"""str, reason code of the current state (``""`` when running); e.g. ``setup``, ``jam``, ``tool_change``."""
PRODUCT: Final = "product"
"""str, product / recipe id being produced."""
PARTS_TOTAL: Final = "parts_total"
"""int, monotonic counter of parts completed (good + scrap); may reset (counter reset is flagged)."""
PARTS_GOOD: Final = "parts_good"
"""int, monotonic counter of good parts."""
PARTS_SCRAP: Final = "parts_scrap"
"""int, monotonic counter of scrapped parts."""
POWER_KW: Final = "power_kw"
"""float, active electrical power in kW."""
ENERGY_KWH: Final = "energy_kwh"
"""float, monotonic active energy counter in kWh."""
ANOMALY_SCORE: Final = "anomaly_score"
"""float in [0, 1], written back by analytics (higher = more anomalous)."""
SCRAP_PROBABILITY: Final = "scrap_probability"
"""float in [0, 1], predicted probability that the current part is scrap, written by analytics'
quality model."""
DERIVED_PREFIXES: Final = ("kpi.", "anomaly", SCRAP_PROBABILITY)
"""Signal prefixes of the series zhizao writes back itself — the KPI feed (``kpi.``), anomaly
scores and contributors (``anomaly_score*``, ``anomaly.contrib.``), scrap probabilities — never a
machine's process signal: ``zhizao check`` leaves them out of its completeness counts, the web
dashboard out of a machine's key signals."""

COUNTERS: Final = (PARTS_TOTAL, PARTS_GOOD, PARTS_SCRAP, ENERGY_KWH)


class MachineState(StrEnum):
    """Machine states. ``off`` is outside planned production time (breaks, no shift)."""

    RUNNING = "running"
    IDLE = "idle"
    SETUP = "setup"
    DOWN = "down"
    OFF = "off"
