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

What a round reads, and the three ways the scoring service's reads went wrong (its README):

* **No watermark.** A round scores every row up to the line's clock minus ``lag_s``, whatever
  each signal's last report: a model signal reported only on change (a setpoint; OPC UA
  data-change subscriptions and MQTT report-by-exception send nothing while a value stays still)
  is carried — its last value, forward-filled — and never holds the machine back; data stamped
  ahead of the line's clock is beyond ``until`` and is read only once the clock has reached it,
  so it moves nothing and makes no later data late.
* **Carried values.** A round reads from ``LOOKBACK_US`` before its last scored row, so a report
  stamped up to five minutes behind it is read with the rows and applies from there on. What lies
  before that is corrected from the catalogue by the scoring service's own read-back
  (:func:`~analytics.scoring.rows.carried`): a value (or ``state``) last reported before the rows
  read — a setpoint set long before the run's start — is read back instead of leaving the
  machine unscored (or scored as if it published no state); a report that arrives stamped behind
  the rows read (the ``state`` of a machine that went idle, reported late) is carried from then
  on instead of the stale value for every later row. Rows already scored keep their scores; a
  late report that contradicts them is logged (WARNING) and counted (``stats.late_changes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from analytics.kpi.config import KpiConfig
from analytics.kpi.service import kpi_report
from analytics.kpi.windows import GroupBy
from analytics.scoring import AnomalyModel
from analytics.scoring.context import HEALTH, score_signal, signal_columns, split_scope
from analytics.scoring.live import MachineScorer
from analytics.scoring.rows import LateReport, aligned_rows, carried
from ingest.storage.base import Store, from_us, to_us
from zhizao import signals as sig
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
    seen: dict[str, int] | None = None
    """The catalogue's last-seen time (µs) of each model signal and ``state`` when ``carry`` was
    taken: one that moves while staying behind the rows read is a late report, read back."""


@dataclass
class AnalyticsStats:
    rounds: int = 0
    failures: int = 0
    scored_rows: int = 0
    events: int = 0
    """Event updates upserted: an episode's open, each new peak, its resolve."""
    episodes: int = 0
    """Anomaly episodes (alarms) raised: distinct event ids, what the store and ``/api/v1/events`` hold."""
    late_changes: int = 0
    """Reports that arrived stamped behind the rows read with another value than the rows
    scored after them used (those keep their scores; the value is carried from then on)."""
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
        self.flags_seen: dict[tuple[str, str, str], list[datetime]] = {}
        """``(machine, flag kind, signal or "")`` -> the line times a data-quality flag was sighted:
        the round it first showed, and each round its count of episodes rose (a second gap of
        the same signal, a second counter reset, another clock jump), so every fault episode has
        a sighting of its own."""
        self._flag_counts: dict[tuple[str, str, str], int] = {}
        self.kpi_cfg = KpiConfig()
        self.interval_s = interval_s
        self.lag = timedelta(seconds=lag_s)
        self.stats = AnalyticsStats()
        self._episode_ids: set[str] = set()
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
            seen: dict[str, dict[str, int]] = {}  # this round's catalogue, read once
            # a copy: add_models may run while this round waits on the store
            for scope, state in list(self.scoring.items()):
                await self._score(scope, state, now - lag, seen)
            if self.watch_flags:
                await self._watch_flags(now - lag)
        except StoreUnavailable as exc:
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            log.warning("analytics round failed (store unavailable), retrying next round: %s", exc)

    async def _watch_flags(self, until: datetime) -> None:
        """Record when data-quality flags of the run so far are sighted (the QA check's detection
        times for telemetry faults: gaps, counter resets, clock skew): a flag's report covers the
        whole run so far, so a new episode shows as its count rising over the last round's."""
        if until <= self.start + timedelta(seconds=60):
            return
        counts: dict[tuple[str, str, str], int] = {}
        for scope in self.scopes:
            report = await kpi_report(self.store, self.plant, self.kpi_cfg, scope, start=self.start,
                                      end=until, group_by=GroupBy.MACHINE)
            for rec in report["windows"][0]["machines"]:
                for flag in rec["data_quality"]["flags"]:
                    key = (rec["machine"], str(flag["kind"]), str(flag.get("signal", "")))
                    counts[key] = counts.get(key, 0) + flag_episodes(flag)
        for key, n in counts.items():
            if n > self._flag_counts.get(key, 0):
                self.flags_seen.setdefault(key, []).append(until)
        self._flag_counts = counts

    async def _last_seen(self, asset: str, cache: dict[str, dict[str, int]]) -> dict[str, int]:
        """``asset``'s signals -> last-seen time (µs) in the catalogue, read once per round (into
        ``cache``: machine -> signal -> time) for every machine."""
        if not cache:
            for e in await self.store.catalogue():
                cache.setdefault(e.asset, {})[e.signal] = to_us(e.last_seen)
        return cache.get(asset, {})

    async def _score(self, scope: str, st: ScoringState, until: datetime,
                     catalogue: dict[str, dict[str, int]]) -> None:
        if until <= st.last:
            return
        asset, columns = st.scorer.asset, st.scorer.model.columns
        start_us = to_us(st.last) + 1
        read_from = start_us - LOOKBACK_US
        wanted = [*signal_columns(columns), sig.STATE]
        last_seen = await self._last_seen(asset, catalogue)
        seen = {c: last_seen[c] for c in wanted if c in last_seen}
        # reports behind the rows read (before the look-back) are read back as the scoring service does
        back = await carried(self.store, asset, wanted, last_seen=seen, seen_before=st.seen,
                             carry=st.carry or None, carry_state=st.carry_state, cursor_us=read_from,
                             read_from_us=read_from, bucket_s=1.0)
        got = await aligned_rows(self.store.query, asset, columns, start_us=start_us, end_us=to_us(until),
                                 read_from_us=read_from, bucket_s=1.0, carry=back.carry,
                                 carry_state=back.carry_state, max_buckets=10_000_000)
        st.carry, st.carry_state, st.seen = got.carry or {}, got.carry_state, seen
        self._late(scope, st, back.late)
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
        new = {e.id for e in events} - self._episode_ids
        self._episode_ids |= new
        self.stats.episodes += len(new)
        self.stats.per_machine[scope] = st.rows

    def _late(self, scope: str, st: ScoringState, late: list[LateReport]) -> None:
        """Log and count the late reports that contradict rows already scored (once: after the
        round's carried values were taken, so a retried round does not find them again)."""
        for r in late:
            self.stats.late_changes += 1
            log.warning("%s: %s was reported %r at %s, behind the rows read (from %s), while %r was carried: "
                        "the rows scored up to %s keep their scores (late data); from there on %r is carried",
                        scope, r.signal, r.value, _iso(r.first_us), _iso(r.cursor_us), r.carried,
                        _iso(to_us(st.last)), r.value)


def flag_episodes(flag: dict[str, Any]) -> int:
    """How many episodes a KPI data-quality flag reports: its ``count`` (gaps, counter resets), a
    clock skew's jumps and out-of-order samples, else 1."""
    count = flag.get("count")
    if isinstance(count, int):
        return max(count, 1)
    if flag.get("kind") == "clock_skew":
        ooo = flag.get("out_of_order_samples") or {}
        n = len(flag.get("jumps") or ()) + sum(int(v) for v in ooo.values())
        return max(n, 1)
    return 1


def _iso(us: int) -> str:
    return from_us(us).isoformat().replace("+00:00", "Z")


def _scorer(scope: str, model: AnomalyModel) -> MachineScorer:
    """The scorer of ``scope``'s model: rule ``anomaly`` (health) or the model's name, its score
    series (:func:`~analytics.scoring.context.score_signal`)."""
    asset, name = split_scope(scope)
    return MachineScorer(asset, model, rule="anomaly" if name == HEALTH else name, signal=score_signal(name))
