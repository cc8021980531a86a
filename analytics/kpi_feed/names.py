"""Signal names the KPI feed writes back to the store (the contract Grafana panels query).

A KPI of window ``w`` is the signal ``kpi.<w>.<name>`` on the machine's asset path, and on the
line pseudo-machine ``<site>/<area>/<line>/line`` for the whole line. ``<name>`` is a field of the
KPI record (``analytics/kpi/record.py``) — ``oee``, ``availability``, ``kwh_per_good_part`` ... —
nested figures flattened with dots (``energy_by_state_kwh.idle``, ``scrap_by_product.bracket-a``),
plus ``plan_count`` (parts the planned time allows at the ideal cycle time) and, when a baseline is
configured, ``baseline_kwh_per_good_part`` / ``target_kwh_per_good_part``. A machine that makes no
parts gets none of :data:`NOT_APPLICABLE_TO_UTILITIES` (so a panel shows no value for them).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kpi"
LINE_MACHINE: Final = "line"
"""Machine segment of the line-level pseudo-asset."""
WINDOWS: Final = ("shift", "1h")
"""``shift``: from the start of the current shift (its planned time so far); ``1h``: the last hour."""

RATIOS: Final = ("availability", "performance", "quality", "oee", "scrap_ratio", "first_pass_yield_ratio",
                 "idle_energy_share_ratio")
COUNTS: Final = ("total_count", "good_count", "scrap_count", "failures", "plan_count")
FIGURES: Final = ("planned_time_s", "run_time_s", "idle_time_s", "setup_time_s", "down_time_s",
                  "energy_kwh", "kwh_per_good_part", "energy_cost", "energy_cost_per_good_part",
                  "mtbf_s", "mttr_s", "good_parts_per_planned_hour", "peak_kw")
NESTED: Final = ("energy_by_state_kwh", "scrap_by_product")
NOT_APPLICABLE_TO_UTILITIES: Final = (
    "performance", "quality", "oee", "first_pass_yield_ratio", "scrap_ratio", "total_count", "good_count",
    "scrap_count", "plan_count", "good_parts_per_planned_hour", "kwh_per_good_part",
    "energy_cost_per_good_part")
"""Figures not written for a machine that makes no parts (KPI record ``producing: false``, a
compressor): the engine's 0 / 1 for them are the definitions' defaults, not a measurement (the
web dashboard shows "–", the KPI alerts give no verdict). Availability, times, energy, cost,
failures, MTBF/MTTR and peak power are written as for any machine. Line records are unaffected."""
BASELINE: Final = "baseline_kwh_per_good_part"
TARGET: Final = "target_kwh_per_good_part"


def kpi_signal(window: str, name: str) -> str:
    """``kpi.<window>.<name>``, e.g. ``kpi.shift.oee``."""
    return f"{PREFIX}.{window}.{name}"
