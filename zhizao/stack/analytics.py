"""The analytics loops of the one-box stack: KPI feed and live anomaly scoring, on ingest's store.

:class:`LiveAnalytics` runs in the same event loop as ingest and uses its open store. Every
``interval_s`` (wall time) one round: each machine's new rows — read and aligned by
:func:`~analytics.scoring.rows.aligned_rows`, as the scoring service reads them — are scored by its
:class:`~analytics.scoring.live.MachineScorer` — ``anomaly_score`` samples written back, anomaly
episodes upserted as events; a machine's energy model (scope ``<machine>#energy``) scores every
row and writes ``anomaly_score.energy``, its episodes with rule ``energy``. KPIs need no loop on
one box: the KPI API mounted on ingest computes them from the raw data on request (the web
dashboard asks it). The KPI feed (``kpi.*`` series for Grafana) is not run here: there is no
Grafana on one box.
Time is the *line's* time (``clock()``, the simulated clock), and
scoring stays ``lag_s`` behind it so rows still in the agent's buffer are not skipped;
:meth:`final_round` scores everything up to the end once the data is drained. A failed round
(store busy) is logged and counted and the next round retries; the loop never dies of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from analytics.scoring import AnomalyModel
from analytics.scoring.context import HEALTH, score_signal, split_scope
from analytics.scoring.live import MachineScorer
from analytics.scoring.rows import aligned_rows
from ingest.storage.base import Store, from_us, to_us
from zhizao.errors import StoreUnavailable
from zhizao.plant import PlantConfig

log = logging.getLogger(__name__)
LOOKBACK_US = 5 * 60 * 1_000_000
"""Rows before the last scored one read again so forward-filled values are known (5 minutes)."""


@dataclass
class ScoringState:
    scorer: MachineScorer
    last: datetime
    rows: int = 0
    events: int = 0
    carry: dict[str, float] = field(default_factory=dict)
    """Each model signal's value at ``last`` (forward-filled), for signals quiet longer than the look-back."""
    carry_state: str | None = None
    """The machine state at ``last``: ``state`` is reported only when it changes."""


@dataclass
class AnalyticsStats:
    rounds: int = 0
    failures: int = 0
    scored_rows: int = 0
    events: int = 0
    last_error: str = ""
    per_machine: dict[str, int] = field(default_factory=dict)


class LiveAnalytics:
    """See the module docstring."""

    def __init__(self, store: Store, plant: PlantConfig, scopes: list[str], models: dict[str, AnomalyModel],
                 *, start: datetime, interval_s: float = 5.0, lag_s: float = 30.0,
                 watch_flags: bool = False) -> None:
        self.store = store
        self.plant = plant
        self.scopes = scopes
        self.start = start
        self.watch_flags = watch_flags
        self.flags_seen: dict[tuple[str, str, str], datetime] = {}
        """``(machine, flag kind, signal or "")`` -> line time a data-quality flag was first seen."""
        self.kpi_cfg = KpiConfig()
        self.interval_s = interval_s
        self.lag = timedelta(seconds=lag_s)
        self.stats = AnalyticsStats()
        self.scoring: dict[str, ScoringState] = {}
        """Per registry scope (``<machine>``, ``<machine>#energy``): its scorer and progress."""
        self.add_models(models)

    def add_models(self, models: dict[str, AnomalyModel]) -> None:
        """Score these models too (scopes not scored yet), from the start of the run: models
        trained while the line already runs catch up from the store."""
        for scope, model in models.items():
            if scope not in self.scoring:
                before = self.start - timedelta(microseconds=1)
                self.scoring[scope] = ScoringState(_scorer(scope, model), last=before)

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Rounds every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            await self.round(clock(), lag=self.lag)

    async def final_round(self, now: datetime) -> None:
        """Score everything up to ``now`` (after the agent drained)."""
        await self.round(now, lag=timedelta(0))

    async def round(self, now: datetime, *, lag: timedelta) -> None:
        self.stats.rounds += 1
        try:
            # a copy: add_models may run while this round waits on the store
            for scope, state in list(self.scoring.items()):
                await self._score(scope, state, now - lag)
            if self.watch_flags:
                await self._watch_flags(now - lag)
        except StoreUnavailable as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            log.warning("analytics round failed (store unavailable), retrying next round: %s", exc)

    async def _watch_flags(self, until: datetime) -> None:
        """Record when each data-quality flag of the run so far is first seen (the QA check's
        detection time for telemetry faults: gaps, counter resets, clock skew)."""
        if until <= self.start + timedelta(seconds=60):
            return
        for scope in self.scopes:
            report = await kpi_report(self.store, self.plant, self.kpi_cfg, scope, start=self.start,
                                      end=until, group_by=GroupBy.MACHINE)
            for rec in report["windows"][0]["machines"]:
                for flag in rec["data_quality"]["flags"]:
                    key = (rec["machine"], str(flag["kind"]), str(flag.get("signal", "")))
                    self.flags_seen.setdefault(key, until)

    async def _score(self, scope: str, st: ScoringState, until: datetime) -> None:
        if until <= st.last:
            return
        start_us = to_us(st.last) + 1
        got = await aligned_rows(self.store.query, st.scorer.asset, st.scorer.model.columns,
                                 start_us=start_us, end_us=to_us(until),
                                 read_from_us=start_us - LOOKBACK_US, bucket_s=1.0,
                                 carry=st.carry or None, carry_state=st.carry_state, max_buckets=10_000_000)
        st.carry, st.carry_state = got.carry or {}, got.carry_state
        if not len(got.ts):
            return
        frame, events = st.scorer.process(got.ts, got.values, got.running)
        if len(frame):
            await self.store.write(frame)
        if events:
            await self.store.upsert_events(events)
        st.last = from_us(int(got.ts[-1]))
        st.rows += len(frame)
        st.events += len(events)
        self.stats.scored_rows += len(frame)
        self.stats.events += len(events)
        self.stats.per_machine[scope] = st.rows


def _scorer(scope: str, model: AnomalyModel) -> MachineScorer:
    """The scorer of ``scope``'s model: rule ``anomaly`` (health) or the model's name, its score
    series (:func:`~analytics.scoring.context.score_signal`)."""
    asset, name = split_scope(scope)
    return MachineScorer(asset, model, rule="anomaly" if name == HEALTH else name, signal=score_signal(name))
