"""KPI alerts: threshold rules evaluated over a sliding window, through the shared event emitter.

Each rule (``analytics.events.config.ThresholdRule``) has its own :class:`EpisodeTracker`, keyed
by machine or line, so debounce and the open/resolve lifecycle are the same as for anomalies.
A rule's ``scope`` is an asset prefix; an empty one covers every machine (and line) of every site:
the sites of the plant file's machines and of the machines the store's catalogue holds KPI signals
of (:func:`every_site`), each read as its own report.

A round (:meth:`KpiAlerter.round`, every ``interval_s`` of ``zhizao analytics kpi --watch``)
evaluates every rule; a rule whose read fails (store unavailable) is skipped for that round and
logged, the others' events still go out. Event updates not taken by every sink stay *pending*
(latest per episode id) and are sent again with the next rounds' — an episode's open or resolve
is never lost to a sink outage; beyond ``max_pending_events`` the oldest are dropped, logged and
counted (:attr:`KpiAlerter.dropped`).

With a ``state_path`` the trackers (open episodes, debounce timers) and the pending updates are
saved there after each round, replaced atomically (temp file, fsync, ``os.replace``, fsync of the
folder), and restored at start: a restart during a breach continues the same episode (same id)
instead of raising a second one. The folder must exist (it is never created); a file that cannot
be read is refused naming it (move it away to start afresh). A rule no longer configured has its
open episodes resolved at the first round after the restart.

A one-shot evaluation (:meth:`KpiAlerter.evaluate_once`, ``--watch --once``) has no earlier rounds
to debounce with, so it replays them: each rule is evaluated at ``at - for_s``, then every
``interval_s``, up to ``at`` (:func:`replay_times`), from the stored data — the answer a watcher
running through that span would have given at ``at``. Breaches held for less than ``for_s`` are
listed by :meth:`KpiAlerter.pending_breaches`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.events.config import ThresholdRule
from analytics.events.emitter import EventEmitter
from analytics.events.tracker import EpisodeTracker
from analytics.kpi.config import KpiConfig
from analytics.kpi.record import PRODUCTION_RATIOS
from analytics.kpi.service import catalogued_machines, kpi_report
from analytics.kpi.windows import GroupBy
from ingest.storage.base import Store
from zhizao.errors import StoreUnavailable
from zhizao.events import Event, EventSource
from zhizao.files import replace_atomically
from zhizao.plant import PlantConfig
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)

STATE_FORMAT = 1
MAX_PENDING_EVENTS = 1000
"""Default bound of the undelivered event updates kept for redelivery."""


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


@dataclass
class AlerterState:
    """What :class:`KpiAlerter` persists: each rule's tracker (by rule name) and the pending
    event updates (by event id, oldest first)."""

    trackers: dict[str, EpisodeTracker]
    pending: dict[str, Event] = field(default_factory=dict)
    format: int = STATE_FORMAT


def load_state(path: Path) -> AlerterState | None:
    """The state saved at ``path``; ``None`` when there is none. ``ValueError`` naming the file when
    it cannot be read or is not a KPI alerter state (never silently restarted from scratch)."""
    if not path.exists():
        return None
    try:
        state = pickle.loads(path.read_bytes())  # the alerter's own file
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as exc:
        raise ValueError(f"KPI alerter state {path} is unreadable ({exc}); move it away to start "
                         "afresh") from exc
    if not isinstance(state, AlerterState) or state.format != STATE_FORMAT:
        raise ValueError(f"{path} is not a KPI alerter state (or another format); move it away to "
                         "start afresh")
    return state


def save_state(path: Path, state: AlerterState) -> None:
    """Replace ``path`` atomically with ``state`` (module docstring)."""
    replace_atomically(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))


class KpiAlerter:
    """See module docstring. ``state_path``: where the state is persisted (``None``: memory only);
    its folder must exist."""

    def __init__(self, rules: Sequence[ThresholdRule], *, state_path: str | Path | None = None,
                 max_pending_events: int = MAX_PENDING_EVENTS) -> None:
        self.rules = list(rules)
        self.trackers = {r.name: EpisodeTracker(
            source=EventSource.KPI, rule=r.name, threshold=r.threshold, severity=r.severity,
            open_after_s=r.for_s, clear_after_s=r.clear_after_s, higher_is_worse=r.op in (">", ">="),
        ) for r in self.rules}
        self.max_pending_events = max_pending_events
        self.pending: dict[str, Event] = {}
        """Event updates not delivered to every sink yet, latest per episode id, oldest first."""
        self.dropped = 0
        """Pending updates dropped beyond ``max_pending_events`` since start."""
        self.unavailable: dict[str, str] = {}
        """Rules skipped by the last :meth:`evaluate` (store unavailable), with the reason."""
        self._retired: list[EpisodeTracker] = []
        self._seen: dict[str, set[str]] = {}
        """Assets each rule has observed (for :meth:`pending_breaches`)."""
        self.state_path = Path(state_path) if state_path is not None else None
        if self.state_path is not None:
            if not self.state_path.parent.is_dir():
                folder = str(self.state_path.parent)
                raise ValueError(f"KPI alerter state {self.state_path}: folder {folder!r} does not exist")
            self._restore(load_state(self.state_path))

    def _restore(self, saved: AlerterState | None) -> None:
        if saved is None:
            return
        for name, tracker in saved.trackers.items():
            if name in self.trackers:
                self.trackers[name].adopt_state(tracker)  # this config's delays, the saved episodes
            elif tracker.open_events():
                self._retired.append(tracker)             # rule removed: resolved at the next round
        self.pending = dict(saved.pending)

    def save(self) -> None:
        """Persist the trackers and the pending updates (no-op without ``state_path``)."""
        if self.state_path is not None:
            save_state(self.state_path, AlerterState(trackers=self.trackers, pending=self.pending))

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
            self._seen.setdefault(rule.name, set()).add(asset)
            msg = f"{rule.kpi} {value:.4g} {rule.op} {rule.threshold:g} over the last {rule.window_s:g} s" \
                if isinstance(value, int | float) else ""
            out += self.trackers[rule.name].observe(
                asset, now, active, value, message=msg,
                details={"kpi": rule.kpi, "op": rule.op, "window_s": rule.window_s,
                         "window_start": w["start"], "window_end": w["end"],
                         "data_quality_ok": rec["data_quality"]["ok"]})
        return out

    async def evaluate(self, store: Store, plant: PlantConfig, cfg: KpiConfig, now: datetime) -> list[Event]:
        """Evaluate every rule at ``now``; returns the events to emit. A rule whose read fails
        (``StoreUnavailable``) is skipped, logged and named in :attr:`unavailable`; the events of
        the other rules are returned all the same (their trackers already moved on)."""
        return await self._evaluate(store, plant, cfg, now, lambda rule: [now])

    async def evaluate_once(self, store: Store, plant: PlantConfig, cfg: KpiConfig, at: datetime, *,
                            interval_s: float) -> list[Event]:
        """A one-shot evaluation as of ``at`` (``--watch --once``): each rule is evaluated at the
        rounds a watcher evaluating every ``interval_s`` would have run over the ``for_s`` ending at
        ``at`` (:func:`replay_times`), from the stored data, so a breach that held at every one of
        them opens its event at ``at``, its ``start`` the first of them (the earliest the replay can
        know; a breach may have begun before). A breach that began later is left pending:
        :meth:`pending_breaches`. Returns the events to emit; :attr:`unavailable` as
        :meth:`evaluate`. Meant for a fresh alerter (no restored state)."""
        return await self._evaluate(store, plant, cfg, at,
                                    lambda rule: replay_times(rule.for_s, at, interval_s))

    def pending_breaches(self, at: datetime) -> list[tuple[str, str, datetime, float]]:
        """Breaches whose debounce has not elapsed as of ``at``: ``(rule, asset, since, for_s)``,
        since = the first evaluation at which the condition held (no event yet)."""
        out = []
        for rule in self.rules:
            tracker = self.trackers[rule.name]
            open_assets = {e.asset for e in tracker.open_events()}
            for asset in sorted(self._seen.get(rule.name, ())):
                due = tracker.due(asset)
                if due is not None and asset not in open_assets and due > at:
                    out.append((rule.name, asset, due - timedelta(seconds=rule.for_s), rule.for_s))
        return out

    async def _evaluate(self, store: Store, plant: PlantConfig, cfg: KpiConfig, now: datetime,
                        times: Callable[[ThresholdRule], list[datetime]]) -> list[Event]:
        """Each rule observed at ``times(rule)`` (ending at ``now``), every read done before the
        rule's tracker is fed, so a rule with a failed read leaves its tracker as it was."""
        out: list[Event] = []
        for tracker in self._retired:
            out += tracker.close_all(now)
        self._retired = []
        self.unavailable = {}
        sites: list[str] | None = None
        for rule in self.rules:
            try:
                if not rule.scope and sites is None:
                    sites = await every_site(store, plant)
                scopes = [rule.scope] if rule.scope else sites or []
                rounds = [(t, await self._reports(store, plant, cfg, rule, scopes=scopes, now=t))
                          for t in times(rule)]
            except StoreUnavailable as exc:
                log.warning("KPI rule %s skipped this round: %s", rule.name, exc)
                self.unavailable[rule.name] = str(exc)
                continue
            for t, reports in rounds:
                for report in reports:
                    out += self.observe_report(rule, report, t)
        return out

    @staticmethod
    async def _reports(store: Store, plant: PlantConfig, cfg: KpiConfig, rule: ThresholdRule, *,
                       scopes: list[str], now: datetime) -> list[dict[str, Any]]:
        start = now - timedelta(seconds=rule.window_s)
        return [await kpi_report(store, plant, cfg, scope, start=start, end=now, group_by=GroupBy.MACHINE)
                for scope in scopes]

    async def deliver(self, emitter: EventEmitter, events: Sequence[Event]) -> bool:
        """Send the pending updates and ``events`` (latest per episode id) to every sink; what a
        sink did not take stays pending (bounded: module docstring). True if nothing is pending."""
        for e in events:
            self.pending.pop(e.id, None)  # re-inserted last: newest at the end
            self.pending[e.id] = e
        if not self.pending:
            return True
        results = await emitter.emit(list(self.pending.values()))
        if all(results.values()):
            self.pending = {}
            return True
        excess = len(self.pending) - self.max_pending_events
        if excess > 0:
            drop = list(self.pending)[:excess]
            log.error("KPI alerts: %d undelivered event updates dropped (ids %s)", len(drop),
                      ", ".join(drop[:10]))
            self.dropped += len(drop)
            for k in drop:
                del self.pending[k]
        return False

    async def round(self, store: Store, plant: PlantConfig, cfg: KpiConfig, emitter: EventEmitter,
                    now: datetime) -> None:
        """One evaluation at ``now``: evaluate, deliver (with the pending updates), save the state
        (a failure to save is logged, not raised)."""
        await self.deliver(emitter, await self.evaluate(store, plant, cfg, now))
        try:
            self.save()
        except OSError as exc:  # alerts keep flowing; a restart would lose this round's debounce state
            log.error("KPI alerter state %s not saved: %s", self.state_path, exc)

    async def run(self, store: Store, plant: PlantConfig, cfg: KpiConfig, emitter: EventEmitter,
                  *, interval_s: float, stop: asyncio.Event) -> None:
        """A :meth:`round` at the current time every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            await self.round(store, plant, cfg, emitter, datetime.now(UTC))
            await wait_event(stop, interval_s)


MAX_REPLAY_ROUNDS = 60
"""At most this many rounds (plus the one at ``at``) per rule in a one-shot evaluation."""


def replay_times(for_s: float, at: datetime, interval_s: float) -> list[datetime]:
    """The rounds of a one-shot evaluation of a rule with debounce ``for_s`` as of ``at``: ``at -
    for_s``, then every ``interval_s`` (wider when that would be more than
    :data:`MAX_REPLAY_ROUNDS` rounds), and ``at`` itself. Only ``at`` when ``for_s`` is 0."""
    if for_s <= 0:
        return [at]
    step = max(interval_s, for_s / MAX_REPLAY_ROUNDS)
    n = math.ceil(for_s / step)
    return [at - timedelta(seconds=for_s - k * step) for k in range(n)] + [at]


async def every_site(store: Store, plant: PlantConfig) -> list[str]:
    """The sites a rule with an empty scope covers: those of the plant file's machines and of the
    machines the store's catalogue holds KPI signals of."""
    return sorted({m.asset.split("/")[0] for m in plant.machines}
                  | {a.split("/")[0] for a in await catalogued_machines(store, None)})
