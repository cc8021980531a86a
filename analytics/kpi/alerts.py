"""KPI alerts: threshold rules evaluated over a sliding window, through the shared event emitter.

Each rule (``analytics.events.config.ThresholdRule``) has its own :class:`EpisodeTracker`, keyed
by machine or line, so debounce and the open/resolve lifecycle are the same as for anomalies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from analytics.events.config import ThresholdRule
from analytics.events.emitter import EventEmitter
from analytics.events.tracker import EpisodeTracker
from analytics.kpi.config import KpiConfig
from analytics.kpi.record import PRODUCTION_RATIOS
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import Store
from zhizao.errors import StoreUnavailable
from zhizao.events import Event, EventSource
from zhizao.plant import PlantConfig
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)


def rule_state(rule: ThresholdRule, value: float | None, planned_s: float) -> bool | None:
    """True: breached; False: clear (beyond the hysteresis); None: no verdict (no value, too little
    planned time, or inside the hysteresis band)."""
    if value is None or planned_s < rule.min_planned_s:
        return None
    th, h = rule.threshold, rule.hysteresis
    if rule.op in ("<", "<="):
        breach = value < th if rule.op == "<" else value <= th
        return True if breach else (False if value >= th + h else None)
    breach = value > th if rule.op == ">" else value >= th
    return True if breach else (False if value <= th - h else None)


class KpiAlerter:
    def __init__(self, rules: Sequence[ThresholdRule]) -> None:
        self.rules = list(rules)
        self.trackers = {r.name: EpisodeTracker(
            source=EventSource.KPI, rule=r.name, threshold=r.threshold, severity=r.severity,
            open_after_s=r.for_s, clear_after_s=r.clear_after_s, higher_is_worse=r.op in (">", ">="),
        ) for r in self.rules}

    def observe_report(self, rule: ThresholdRule, report: dict[str, Any], now: datetime) -> list[Event]:
        """Feed one rule the records of a report (``group_by=machine``) evaluated at ``now``."""
        w = report["windows"][0]
        recs = w["machines"] if rule.level == "machine" else w["lines"]
        out: list[Event] = []
        for rec in recs:
            asset = rec["machine"] if rule.level == "machine" else rec["line"]
            if rule.scope and not (asset == rule.scope or asset.startswith(rule.scope.rstrip("/") + "/")):
                continue
            if rule.kpi not in rec:
                raise KeyError(f"rule {rule.name}: unknown KPI {rule.kpi!r}")
            value = rec[rule.kpi]
            if rec.get("producing") is False and rule.kpi in PRODUCTION_RATIOS:
                value = None  # a compressor's OEE of 0 is no production problem: no verdict
            active = rule_state(rule, value, rec["planned_time_s"])
            msg = f"{rule.kpi} {value:.4g} {rule.op} {rule.threshold:g} over the last {rule.window_s:g} s" \
                if isinstance(value, int | float) else ""
            out += self.trackers[rule.name].observe(
                asset, now, active, value, message=msg,
                details={"kpi": rule.kpi, "op": rule.op, "window_s": rule.window_s,
                         "window_start": w["start"], "window_end": w["end"],
                         "data_quality_ok": rec["data_quality"]["ok"]})
        return out

    async def evaluate(self, store: Store, plant: PlantConfig, cfg: KpiConfig, now: datetime) -> list[Event]:
        """Evaluate every rule at ``now``; returns the events to emit."""
        out: list[Event] = []
        for rule in self.rules:
            scope = rule.scope or _site(plant)
            report = await kpi_report(store, plant, cfg, scope, start=now - timedelta(seconds=rule.window_s),
                                      end=now, group_by=GroupBy.MACHINE)
            out += self.observe_report(rule, report, now)
        return out

    async def run(self, store: Store, plant: PlantConfig, cfg: KpiConfig, emitter: EventEmitter,
                  *, interval_s: float, stop: asyncio.Event) -> None:
        """Evaluate every ``interval_s`` until ``stop`` is set; a store outage skips a round (logged)."""
        from zhizao.model import utc

        while not stop.is_set():
            try:
                await emitter.emit(await self.evaluate(store, plant, cfg, utc(datetime.now())))
            except StoreUnavailable as exc:
                log.warning("KPI alerts skipped this round: %s", exc)
            await wait_event(stop, interval_s)


def _site(plant: PlantConfig) -> str:
    if not plant.machines:
        raise ValueError("a KPI rule without scope needs machines in the plant file")
    return plant.machines[0].asset.split("/")[0]
