"""Improvement of a period against a baseline period, and whether each target is met.

Targets (``Targets``, defaults from the regional programme): energy efficiency (kWh per good part
must fall to baseline ÷ (1 + 15 %)), operating cost (energy cost per good part −10 %),
productivity (good parts per planned hour +20 %).

A baseline figure of ``None`` or 0 (no good parts, no planned time, no energy data in the
baseline) gives no target: ``target``, ``change_pct`` and ``met`` are ``None`` — a target of 0
would be met by any period, an empty one included. Likewise ``met`` is ``None`` when the current
figure is ``None`` (no good parts in the current period for a per-part figure).
"""

from __future__ import annotations

from typing import Any

from analytics.kpi.config import Targets


def _metric(name: str, unit: str, base: float | None, cur: float | None, goal: float | None, *,
            lower_is_better: bool) -> dict[str, Any]:
    if not base:  # None or 0: nothing to improve on, no verdict
        goal = None
    change = (cur / base - 1.0) * 100.0 if base and cur is not None else None
    met = None
    if goal is not None and cur is not None:
        met = cur <= goal if lower_is_better else cur >= goal
    return {"metric": name, "unit": unit, "baseline": base, "current": cur, "target": goal,
            "change_pct": change, "lower_is_better": lower_is_better, "met": met}


def compare(baseline: dict[str, Any], current: dict[str, Any], targets: Targets) -> dict[str, Any]:
    """Compare two KPI records (``derive`` output of the same scope). ``met`` is ``None`` when a
    figure cannot be computed (no good parts in a period) or the baseline's is 0 (module doc)."""
    bk, ck = baseline["kwh_per_good_part"], current["kwh_per_good_part"]
    bc, cc = baseline["energy_cost_per_good_part"], current["energy_cost_per_good_part"]
    bp, cp = baseline["good_parts_per_planned_hour"], current["good_parts_per_planned_hour"]
    gk = bk / (1 + targets.energy_efficiency_pct / 100) if bk is not None else None
    gc = bc * (1 - targets.operating_cost_reduction_pct / 100) if bc is not None else None
    gp = bp * (1 + targets.productivity_pct / 100) if bp is not None else None
    rows = [
        _metric("energy_efficiency", "kwh_per_good_part", bk, ck, gk, lower_is_better=True),
        _metric("operating_cost", f"{current['cost_currency']}_per_good_part", bc, cc, gc,
                lower_is_better=True),
        _metric("productivity", "good_parts_per_planned_hour", bp, cp, gp, lower_is_better=False),
    ]
    if bk and ck:
        rows[0]["efficiency_gain_pct"] = (bk / ck - 1.0) * 100.0
    return {"targets": targets.model_dump(), "metrics": rows,
            "all_met": all(r["met"] is True for r in rows),
            "data_quality_ok": baseline["data_quality"]["ok"] and current["data_quality"]["ok"]}
