"""KPI records: additive totals of a machine (or a group of machines) over a window, and the
ratios derived from them. Field names carry their units (``_s``, ``_kwh``, ``_kw``, ``_ratio``;
``availability``/``performance``/``quality``/``oee`` are ratios 0..1 as in the shared definitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analytics.kpi.dataquality import Flag, summarise

_TIME_FIELDS = ("planned_time_s", "run_time_s", "idle_time_s", "setup_time_s", "down_time_s",
                "unknown_time_s", "ideal_time_s")
_COUNT_FIELDS = ("total_count", "good_count", "scrap_count", "failures")
PRODUCTION_RATIOS = ("performance", "quality", "oee", "first_pass_yield_ratio")
"""Ratios that only mean something for a machine that makes parts: on a machine record with
``producing: false`` (a compressor) they are the definitions' 0 or 1, not a measurement."""
NOT_APPLICABLE_TO_UTILITIES = ("good_parts_per_planned_hour", "six_big_losses_s.reduced_speed_s",
                               "six_big_losses_s.process_defects_s")
"""Production-only figures that are ``None`` on a ``producing: false`` record: a compressor makes no
parts, so its whole run time would read as a speed loss and its throughput as 0. (Its per-part
figures and ``scrap_ratio`` are ``None`` anyway: no parts; ``reduced_yield_s`` is always ``None``.)"""


def _add_into(a: dict[str, float], b: dict[str, float]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0.0) + v


@dataclass(slots=True)
class Totals:
    """Everything about a window that adds up across machines."""

    planned_time_s: float = 0.0
    run_time_s: float = 0.0
    idle_time_s: float = 0.0
    setup_time_s: float = 0.0
    down_time_s: float = 0.0
    unknown_time_s: float = 0.0
    """Planned seconds whose state is unknown (no data yet, a silence beyond the gap threshold after
    the last sample, or ``off`` reported in planned time)."""
    ideal_time_s: float = 0.0
    total_count: int = 0
    good_count: int = 0
    scrap_count: int = 0
    failures: int = 0
    down_time_s_by_reason: dict[str, float] = field(default_factory=dict)
    count_by_product: dict[str, dict[str, int]] = field(default_factory=dict)
    energy_kwh: float = 0.0
    energy_by_state_kwh: dict[str, float] = field(default_factory=dict)
    energy_cost: float = 0.0
    energy_cost_by_period: dict[str, float] = field(default_factory=dict)
    peak_kw: float | None = None
    flags: list[Flag] = field(default_factory=list)

    def add(self, o: Totals, *, producing: bool = True) -> None:
        """Accumulate ``o`` (a machine) into this total (a line/site); peak is the max.

        A machine that makes no parts (``producing=False``: a compressor, a chiller) adds its
        energy, cost and flags only: its times, stops and reasons would otherwise enter the line's
        Availability/Performance/OEE and MTBF/MTTR, where a machine with no ideal cycle time can
        only show a Performance of 0."""
        for f in ("energy_kwh", "energy_cost"):
            setattr(self, f, getattr(self, f) + getattr(o, f))
        _add_into(self.energy_by_state_kwh, o.energy_by_state_kwh)
        _add_into(self.energy_cost_by_period, o.energy_cost_by_period)
        self.flags.extend(o.flags)
        if o.peak_kw is not None:
            self.peak_kw = o.peak_kw if self.peak_kw is None else max(self.peak_kw, o.peak_kw)
        if not producing:
            return
        for f in _TIME_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(o, f))
        for f in _COUNT_FIELDS:
            setattr(self, f, getattr(self, f) + getattr(o, f))
        _add_into(self.down_time_s_by_reason, o.down_time_s_by_reason)
        for p, c in o.count_by_product.items():
            mine = self.count_by_product.setdefault(p, {"total": 0, "good": 0, "scrap": 0})
            for k, v in c.items():
                mine[k] = mine.get(k, 0) + v


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def derive(t: Totals, currency: str, *, producing: bool = True) -> dict[str, Any]:
    """The full KPI record of ``t``: totals plus OEE factors, energy, quality, reliability,
    throughput, six big losses and data quality. Denominator rules: A = 0 when planned = 0,
    P = 0 when run = 0, Q = 1 when total = 0; per-part and per-failure figures are ``None``.
    ``producing=False`` (a machine that makes no parts): :data:`NOT_APPLICABLE_TO_UTILITIES` are
    ``None``."""
    a = t.run_time_s / t.planned_time_s if t.planned_time_s else 0.0
    p = t.ideal_time_s / t.run_time_s if t.run_time_s else 0.0
    q = t.good_count / t.total_count if t.total_count else 1.0
    non_running = sum(v for k, v in t.energy_by_state_kwh.items() if k != "running")
    scrap_by_product = {k: v.get("scrap", 0) for k, v in sorted(t.count_by_product.items())}
    ideal_ct_scrap = (t.ideal_time_s / t.total_count * t.scrap_count) if t.total_count else 0.0
    return {
        "planned_time_s": t.planned_time_s,
        "run_time_s": t.run_time_s,
        "idle_time_s": t.idle_time_s,
        "setup_time_s": t.setup_time_s,
        "down_time_s": t.down_time_s,
        "unknown_time_s": t.unknown_time_s,
        "down_time_s_by_reason": dict(sorted(t.down_time_s_by_reason.items())),
        "ideal_time_s": t.ideal_time_s,
        "total_count": t.total_count,
        "good_count": t.good_count,
        "scrap_count": t.scrap_count,
        "count_by_product": dict(sorted(t.count_by_product.items())),
        "availability": a,
        "performance": p,
        "quality": q,
        "oee": a * p * q,
        "energy_kwh": t.energy_kwh,
        "energy_by_state_kwh": dict(sorted(t.energy_by_state_kwh.items())),
        "idle_energy_share_ratio": _div(non_running, t.energy_kwh),
        "kwh_per_good_part": _div(t.energy_kwh, t.good_count),
        "peak_kw": t.peak_kw,
        "energy_cost": t.energy_cost,
        "energy_cost_by_period": dict(sorted(t.energy_cost_by_period.items())),
        "energy_cost_per_good_part": _div(t.energy_cost, t.good_count),
        "cost_currency": currency,
        "scrap_ratio": _div(t.scrap_count, t.total_count),
        "first_pass_yield_ratio": q,
        "scrap_by_product": scrap_by_product,
        "failures": t.failures,
        "stops": t.failures,
        "mtbf_s": _div(t.run_time_s, t.failures),
        "mttr_s": _div(t.down_time_s, t.failures),
        "good_parts_per_planned_hour": _div(t.good_count * 3600.0, t.planned_time_s) if producing else None,
        "six_big_losses_s": {
            "breakdowns_s": t.down_time_s,
            "setup_adjustments_s": t.setup_time_s,
            "idling_minor_stops_s": t.idle_time_s,
            "reduced_speed_s": max(t.run_time_s - t.ideal_time_s, 0.0) if producing else None,
            "process_defects_s": ideal_ct_scrap if producing else None,
            "reduced_yield_s": None,
        },
        "data_quality": summarise(t.flags),
    }
