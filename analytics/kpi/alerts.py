"""KPI alerts: threshold rules evaluated over a sliding window, through the shared event emitter.

Each rule (``analytics.events.config.ThresholdRule``) has its own :class:`EpisodeTracker`, keyed
by machine or line, so debounce and the open/resolve lifecycle are the same as for anomalies.

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
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
        out: list[Event] = []
        for tracker in self._retired:
            out += tracker.close_all(now)
        self._retired = []
        self.unavailable = {}
        for rule in self.rules:
            scope, start = rule.scope or _site(plant), now - timedelta(seconds=rule.window_s)
            try:
                report = await kpi_report(store, plant, cfg, scope, start=start, end=now,
                                          group_by=GroupBy.MACHINE)
            except StoreUnavailable as exc:
                log.warning("KPI rule %s skipped this round: %s", rule.name, exc)
                self.unavailable[rule.name] = str(exc)
                continue
            out += self.observe_report(rule, report, now)
        return out

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


def _site(plant: PlantConfig) -> str:
    if not plant.machines:
        raise ValueError("a KPI rule without scope needs machines in the plant file")
    return plant.machines[0].asset.split("/")[0]
