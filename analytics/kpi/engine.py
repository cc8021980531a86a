"""The KPI engine: per machine and window, totals following the shared KPI definitions
(``analytics/kpi/README.md``), from columnar telemetry (:mod:`analytics.kpi.series`).

Pure and synchronous: no I/O. The cost is a few numpy passes over each machine's samples, so a
day of 1 s data for a line takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from analytics.kpi.config import DataQualityConfig
from analytics.kpi.counters import Increments, in_window, unwrap, value_at
from analytics.kpi.dataquality import Flag, clock_jumps, gap_seconds
from analytics.kpi.record import Totals
from analytics.kpi.series import MachineData, Series
from analytics.kpi.tariff import period_edges, period_name
from analytics.kpi.timeline import (
    DOWN,
    IDLE,
    NAMES_WITH_UNKNOWN,
    OFF,
    RUNNING,
    SETUP,
    STATE_NAMES,
    UNKNOWN,
    down_entries,
    hold,
    planned_mask,
    segments,
)
from zhizao import signals as sig
from zhizao.plant import MachineSpec, PlantConfig
from zhizao.wire import format_ts

KPI_SIGNALS = (sig.STATE, sig.STATE_REASON, sig.PRODUCT, sig.PARTS_TOTAL, sig.PARTS_GOOD,
               sig.PARTS_SCRAP, sig.ENERGY_KWH, sig.POWER_KW)
"""The signals the KPIs are computed from (fetch exactly these)."""
GAP_CHECKED = (sig.STATE, sig.PARTS_TOTAL, sig.ENERGY_KWH)
_PARTS = ((sig.PARTS_TOTAL, "total"), (sig.PARTS_GOOD, "good"), (sig.PARTS_SCRAP, "scrap"))


@dataclass(frozen=True, slots=True)
class Window:
    """A KPI window ``[start, end)`` (float epoch seconds) with its planned intervals."""

    id: str
    start: float
    end: float
    planned: list[tuple[float, float]]


class PreparedMachine:
    """One machine's telemetry made ready for any number of windows: counters unwrapped, failure
    entries found."""

    def __init__(self, data: MachineData, plant: PlantConfig, dq: DataQualityConfig) -> None:
        self.asset = data.asset
        self.spec: MachineSpec | None = plant.machine(data.asset)
        self.dq = dq
        self.data = data
        self.state = data.get(sig.STATE, text=True)
        self.reason = data.get(sig.STATE_REASON, text=True)
        self.product = data.get(sig.PRODUCT, text=True)
        self.power = data.get(sig.POWER_KW)
        self.parts: dict[str, Increments] = {
            name: unwrap(data.get(s), rollover_at=dq.counter_rollover.get(s)) for s, name in _PARTS
        }
        self.energy = unwrap(data.get(sig.ENERGY_KWH), rollover_at=dq.counter_rollover.get(sig.ENERGY_KWH),
                             tolerance=dq.energy_jitter_kwh)
        self.down_at = down_entries(self.state)

    def window(self, w: Window, plant: PlantConfig) -> Totals:
        t = Totals(planned_time_s=sum(b - a for a, b in w.planned))
        flags: list[Flag] = []
        self._states(w, t, flags)
        self._counts(w, t, flags)
        self._energy(w, t, plant)
        pm = planned_mask(self.down_at, w.planned)
        t.failures = int(np.count_nonzero(pm & (self.down_at >= w.start) & (self.down_at < w.end)))
        self._quality(w, flags)
        t.flags = [{**f, "machine": self.asset} for f in flags]
        return t

    def _states(self, w: Window, t: Totals, flags: list[Flag]) -> None:
        seg = segments(self.state, self.reason, w.start, w.end, planned=w.planned,
                       max_hold_s=self.dq.gap_threshold_s)
        d = seg.durations
        by = np.bincount(seg.state[seg.planned], d[seg.planned], minlength=UNKNOWN + 1)
        # Planned time reported as ``off`` is not a state the definitions allow: unknown.
        t.run_time_s, t.idle_time_s = float(by[RUNNING]), float(by[IDLE])
        t.setup_time_s, t.down_time_s = float(by[SETUP]), float(by[DOWN])
        t.unknown_time_s = float(by[UNKNOWN] + by[OFF])
        if by[UNKNOWN] > 0:
            flags.append({"kind": "unknown_state", "unknown_time_s": float(by[UNKNOWN])})
        if by[OFF] > 0:
            flags.append({"kind": "off_in_planned_time", "off_time_s": float(by[OFF])})
        stop = seg.planned & np.isin(seg.state, (IDLE, SETUP, DOWN))
        if np.any(stop):
            names = np.array(STATE_NAMES, object)[seg.state[stop]]
            keys = names + ":" + seg.reason[stop]
            uniq, inv = np.unique(keys.astype(str), return_inverse=True)
            sums = np.bincount(inv.reshape(-1), d[stop])
            t.down_time_s_by_reason = {str(k): float(v) for k, v in zip(uniq, sums, strict=True)}
        self._segments = seg

    def _counts(self, w: Window, t: Totals, flags: list[Flag]) -> None:
        by_product: dict[str, dict[str, int]] = {}
        sums: dict[str, int] = {}
        for name, inc in self.parts.items():
            i, j = in_window(inc, w.start, w.end)
            vals = inc.inc[i:j]
            sums[name] = round(float(vals.sum()))
            nz = vals > 0
            if not np.any(nz):
                continue
            # The product reported strictly before the counter moved: a product change reported at
            # the same instant as a completed part applies to the next part.
            k = np.searchsorted(self.product.ts, inc.ts[i:j][nz], "left") - 1
            prods = np.where(k >= 0, self.product.values[np.maximum(k, 0)] if len(self.product) else "", "")
            uniq, inv = np.unique(prods.astype(str), return_inverse=True)
            per = np.bincount(inv.reshape(-1), vals[nz])
            for p, n in zip(uniq, per, strict=True):
                by_product.setdefault(str(p), {"total": 0, "good": 0, "scrap": 0})[name] = round(float(n))
        t.total_count, t.good_count, t.scrap_count = sums["total"], sums["good"], sums["scrap"]
        t.count_by_product = dict(sorted(by_product.items()))
        if t.total_count != t.good_count + t.scrap_count:
            flags.append({"kind": "count_mismatch", "total_count": t.total_count,
                          "good_plus_scrap_count": t.good_count + t.scrap_count})
        ict = self.spec.ideal_cycle_time_s if self.spec else {}
        for p, c in t.count_by_product.items():
            if p in ict:
                t.ideal_time_s += ict[p] * c["total"]
            else:
                flags.append({"kind": "missing_ideal_cycle_time", "product": p, "count": c["total"]})

    def _energy(self, w: Window, t: Totals, plant: PlantConfig) -> None:
        seg = self._segments
        e = value_at(self.energy, seg.edges)
        per = np.diff(e)
        by = np.bincount(seg.state, per, minlength=UNKNOWN + 1)
        t.energy_kwh = float(e[-1] - e[0])
        t.energy_by_state_kwh = {NAMES_WITH_UNKNOWN[i]: float(by[i]) for i in range(UNKNOWN)}
        if by[UNKNOWN]:
            t.energy_by_state_kwh["unknown"] = float(by[UNKNOWN])
        edges = np.concatenate(([w.start], period_edges(plant.tariff, plant.calendar.timezone,
                                                         w.start, w.end), [w.end]))
        te = np.diff(value_at(self.energy, edges))
        for a, kwh in zip(edges[:-1], te, strict=True):
            name, price = period_name(plant.tariff, plant.calendar.timezone, float(a))
            t.energy_cost_by_period[name] = t.energy_cost_by_period.get(name, 0.0) + float(kwh) * price
            t.energy_cost += float(kwh) * price
        i, j = np.searchsorted(self.power.ts, [w.start, w.end], "left")
        t.peak_kw = float(self.power.values[i:j].astype(np.float64).max()) if j > i else None

    def _quality(self, w: Window, flags: list[Flag]) -> None:
        # Nothing within the look-back of the window (nor in it, nor just after): ``no_data``,
        # whether or not the query read samples further away — the flag must not depend on where
        # the query starts (the reader reads ``reach`` around every window, see service.kpi_report).
        reach = max(self.dq.lookback_s, self.dq.gap_threshold_s)
        for s in GAP_CHECKED:
            series: Series = self.data.get(s, text=s == sig.STATE)
            i, j = np.searchsorted(series.ts, [w.start - reach, w.end + reach], "left")
            if j <= i:
                flags.append({"kind": "no_data", "signal": s})
                continue
            gap_s, n = gap_seconds(series, w.start, w.end, self.dq.gap_threshold_s)
            if n:
                flags.append({"kind": "telemetry_gap", "signal": s, "gap_s": gap_s, "count": n})
        bucket = self.dq.coverage_bucket_s
        for s, starts in sorted(self.data.coverage.items()):
            if s in self.data.signals:
                continue
            gap_s, n = gap_seconds(Series(starts, starts), w.start, w.end, self.dq.gap_threshold_s + bucket)
            if n:
                flags.append({"kind": "telemetry_gap", "signal": s, "gap_s": gap_s, "count": n,
                              "kpi_input": False})
        for s, inc in ((sig.PARTS_TOTAL, self.parts["total"]), (sig.ENERGY_KWH, self.energy)):
            for kind, times in (("counter_reset", inc.resets), ("counter_rollover", inc.rollovers)):
                n = int(np.count_nonzero((times >= w.start) & (times < w.end)))
                if n:
                    flags.append({"kind": kind, "signal": s, "count": n})
        jumps = [(t, o) for t, o in clock_jumps(self.data.get(sig.ENERGY_KWH), w.start, w.end)
                 if abs(o) > self.dq.clock_skew_tolerance_s]
        ooo = {s: int(np.count_nonzero((inc.out_of_order >= w.start) & (inc.out_of_order < w.end)))
               for s, inc in ((sig.PARTS_TOTAL, self.parts["total"]), (sig.ENERGY_KWH, self.energy))}
        if jumps or any(ooo.values()):
            flags.append({"kind": "clock_skew", "jumps": [{"at": _ts(t), "offset_s": round(o, 3)}
                                                          for t, o in jumps],
                          "out_of_order_samples": {k: v for k, v in ooo.items() if v}})
        for s, series in self.data.signals.items():
            n = int(np.count_nonzero((series.bad_ts >= w.start) & (series.bad_ts < w.end)))
            if n:
                flags.append({"kind": "bad_quality_samples", "signal": s, "count": n})


def compute(machines: dict[str, MachineData], windows: list[Window], plant: PlantConfig,
            dq: DataQualityConfig) -> dict[str, list[Totals]]:
    """Totals of every machine for every window (in the order of ``windows``)."""
    return {a: [p.window(w, plant) for w in windows] for a, p in prepare(machines, plant, dq).items()}


def prepare(machines: dict[str, MachineData], plant: PlantConfig, dq: DataQualityConfig
            ) -> dict[str, PreparedMachine]:
    return {a: PreparedMachine(machines[a], plant, dq) for a in sorted(machines)}


def summed_peak_kw(prepared: list[PreparedMachine], w: Window) -> float | None:
    """Peak of the summed power of several machines (a line's demand) in ``w``: each machine's
    ``power_kw`` held from sample to sample, summed at every instant any of them reported."""
    parts = []
    for p in prepared:
        i, j = np.searchsorted(p.power.ts, [w.start, w.end], "left")
        if j > i:
            parts.append(p.power.ts[i:j])
    if not parts:
        return None
    grid = np.unique(np.concatenate(parts))
    total = np.zeros(grid.shape)
    for p in prepared:
        if len(p.power) == 0:
            continue
        k = hold(p.power.ts, grid)
        total += np.where(k >= 0, p.power.values.astype(np.float64)[np.maximum(k, 0)], 0.0)
    return float(total.max())


def _ts(x: float) -> str:
    return format_ts(datetime.fromtimestamp(x, UTC))
