"""Episode lifecycle with debounce: open -> (updates) -> resolved, one ``Event`` id per episode.

Feed :meth:`EpisodeTracker.observe` one observation per key (an asset) whenever the condition
is evaluated. An episode opens only after the condition has held for ``open_after_s``
(debounce: one bad reading is not an alarm) and resolves only after it has been clear for
``clear_after_s``. The event's ``start`` is when the condition first held and ``end`` when it
first cleared, so the debounce never distorts the episode's times. Both delays are measured
between observations: ``resumed=True`` marks the first observation after a stretch with none (a
machine that was stopped, a gap in the data) — the condition is not assumed to have held, or to
have been clear, through it, so both timers restart there (``hold_across_gaps``: pause through
it instead); an open episode stays open. While
open, an update is returned each time the peak worsens (stores upsert on ``id``). ``None`` as
``active`` means "inside the hysteresis band": no change either way. ``details["raised_at"]``
(RFC 3339, data time) is when the episode opened — the alarm went out — ``open_after_s`` or more
after ``start``; it stays the same in every update of the episode.

Used by the KPI alerter (``source=kpi``) and by the anomaly scorer (``source=anomaly``).
Not thread-safe; one tracker per rule/model, driven from one task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from zhizao.events import Contributor, Event, EventSource, EventState, Severity
from zhizao.wire import format_ts

RAISED_AT = "raised_at"
"""``Event.details`` key: when the episode opened (the alarm went out), RFC 3339 UTC."""


def episode_id(source: EventSource, rule: str, asset: str, start: datetime) -> str:
    """Stable id of the episode of ``rule`` on ``asset`` that started at ``start``."""
    return f"{source.value}:{rule}:{asset}:{start.strftime('%Y%m%dT%H%M%S.%fZ')}"


@dataclass(slots=True)
class _State:
    pending_since: datetime | None = None
    pending_gap_s: float = 0.0
    """Unobserved seconds inside the on-delay so far (``hold_across_gaps``): not counted."""
    clear_since: datetime | None = None
    clear_gap_s: float = 0.0
    last_ts: datetime | None = None
    """The previous observation's time (any ``active``)."""
    event: Event | None = None

    def __setstate__(self, state: tuple[None, dict[str, Any]] | dict[str, Any]) -> None:
        """Unpickle, filling fields a snapshot from an older version lacks with their defaults (a
        live scorer's saved state outlives an upgrade)."""
        self.__init__()  # type: ignore[misc]
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, name, value)


@dataclass
class EpisodeTracker:
    source: EventSource
    rule: str
    threshold: float | None = None
    severity: Severity = Severity.WARNING
    open_after_s: float = 0.0
    clear_after_s: float = 0.0
    higher_is_worse: bool = True
    """Direction of ``peak``: the highest value (scores, idle share) or the lowest (OEE)."""
    hold_across_gaps: bool = False
    """What an unobserved stretch does to a running timer: ``False`` restarts it at the resumed
    observation; ``True`` pauses it — the delays count observed time only, so a condition that
    held 80 s before a stop and holds 40 s after it opens with a 120-s ``open_after_s``. Either
    way the stretch itself never counts as held or as clear. The stretch runs from the previous
    observation to the resumed one: a caller observing sparsely observes the last tick before it."""
    _keys: dict[str, _State] = field(default_factory=dict)

    def open_events(self) -> list[Event]:
        """Episodes open right now."""
        return [s.event for s in self._keys.values() if s.event is not None]

    def observe(self, asset: str, ts: datetime, active: bool | None, value: float | None = None, *,
                message: str = "", contributors: list[Contributor] | None = None,
                details: dict[str, Any] | None = None, resumed: bool = False) -> list[Event]:
        """Record one evaluation at ``ts``; returns the events to emit (possibly none).
        ``resumed``: the first evaluation after an unobserved stretch (module docstring)."""
        st = self._keys.setdefault(asset, _State())
        if resumed:
            if not self.hold_across_gaps:
                st.pending_since = st.clear_since = None
            elif st.last_ts is not None:
                gap = max(0.0, (ts - st.last_ts).total_seconds())
                st.pending_gap_s += gap if st.pending_since is not None else 0.0
                st.clear_gap_s += gap if st.clear_since is not None else 0.0
        st.last_ts = ts
        if active is None:
            return []
        if active:
            st.clear_since = None
            if st.event is None:
                if st.pending_since is None:
                    st.pending_since, st.pending_gap_s = ts, 0.0
                if (ts - st.pending_since).total_seconds() - st.pending_gap_s < self.open_after_s:
                    return []
                st.event = Event(
                    id=episode_id(self.source, self.rule, asset, st.pending_since), source=self.source,
                    rule=self.rule, asset=asset, severity=self.severity, start=st.pending_since,
                    value=value, peak=value, threshold=self.threshold, message=message,
                    contributors=contributors or [], details={**(details or {}), RAISED_AT: format_ts(ts)})
                return [st.event]
            if value is not None and self._worse(value, st.event.peak):
                raised = {RAISED_AT: st.event.details[RAISED_AT]} if RAISED_AT in st.event.details else {}
                st.event = st.event.model_copy(update={
                    "value": value, "peak": value, "message": message or st.event.message,
                    "contributors": contributors if contributors is not None else st.event.contributors,
                    "details": {**details, **raised} if details is not None else st.event.details})
                return [st.event]
            if value is not None:
                st.event = st.event.model_copy(update={"value": value})
            return []
        st.pending_since = None
        if st.event is None:
            return []
        if st.clear_since is None:
            st.clear_since, st.clear_gap_s = ts, 0.0
        if (ts - st.clear_since).total_seconds() - st.clear_gap_s < self.clear_after_s:
            return []
        done = st.event.resolved(st.clear_since, value)
        st.event, st.clear_since = None, None
        return [done]

    def adopt_state(self, other: EpisodeTracker) -> None:
        """Take ``other``'s episodes and timers (a restored snapshot), keeping this tracker's
        settings (rule, delays, ``hold_across_gaps``)."""
        self._keys = other._keys

    def due(self, asset: str) -> datetime | None:
        """When the next change is due if the condition keeps its state and is observed without
        a gap from now on: the time an episode would open (a pending one) or resolve (a clearing
        one); ``None`` if neither timer runs. Lets a caller that observes only the condition's
        changes (``eval sim``) observe once more exactly then."""
        st = self._keys.get(asset)
        if st is None:
            return None
        if st.event is None and st.pending_since is not None:
            return st.pending_since + timedelta(seconds=self.open_after_s + st.pending_gap_s)
        if st.event is not None and st.clear_since is not None:
            return st.clear_since + timedelta(seconds=self.clear_after_s + st.clear_gap_s)
        return None

    def _worse(self, value: float, peak: float | None) -> bool:
        if peak is None:
            return True
        return value > peak if self.higher_is_worse else value < peak

    def close_all(self, ts: datetime) -> list[Event]:
        """Resolve every open episode at ``ts`` (shutdown), or at its start if ``ts`` is earlier (an
        event never ends before it starts: ingest refuses one that does)."""
        out = []
        for st in self._keys.values():
            if st.event is not None and st.event.state is EventState.OPEN:
                out.append(st.event.resolved(max(ts, st.event.start)))
                st.event = None
        return out
