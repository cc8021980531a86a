"""One model of one machine in the scoring service: its promoted version, its cursor, one step at a time.

A worker scores machine ``asset`` with model ``model`` (``health``, ``energy``, ...: registry scope
``asset`` or ``asset#model``, :mod:`analytics.scoring.context`); a machine with two models has two
workers, each with its own cursor, state file, score series and events.

A step scores the machine's *closed* windows (fixed grid of ``window_s``, aligned to the epoch):
``[a, b)`` is closed once every model signal has data at or after ``b + lateness_s`` (the
watermark is the slowest signal's last-seen time in the catalogue), or once the data stopped
advancing for ``quiet_close_s`` of wall time (then up to the last data). Two rules bound the
watermark (:meth:`MachineWorker.watermark`):

* **sample-and-hold** — a model signal reported only on change whose last report has not moved
  for ``hold_after_s`` of wall time while another model signal has newer data is *held*: it
  counts as far as the newest data of the machine's other model signals (never further), and its
  rows use its last value (carried, or read back when older than the rows read). Its next
  report ends the hold. The held signals are persisted, so a restart does not wait again;
* **future stamps** — a last-seen time more than ``max_future_s`` ahead of the service's clock
  (a device clock ahead) is not used: that signal's progress is its last data up to the horizon
  (:func:`analytics.scoring.rows.last_bucket`), counted per signal and logged once per machine and change.

The step reads
``[cursor, end)`` as ``bucket_s`` means (the very first step from ``lookback_s`` earlier), aligns
and forward-fills the signals as training does — the last known value of each signal and the last
known ``state`` are carried from step to step (persisted), since both may be reported only on
change — keeps ``running`` rows (when the machine publishes ``state``; a model with
``states == "all"`` keeps every row and sees the state as columns), scores them with
:class:`~analytics.scoring.live.MachineScorer`, writes each window's ``anomaly_score`` (or
``anomaly_score.<model>``) samples as one batch with id
``s.<scope key>.<model version>.<window start µs>`` (so a redone step stores nothing twice), hands
the events to the sinks, then persists the state (:mod:`.state`).

Late data: rows whose timestamp is before the cursor when they arrive are stored by ingest but
never scored (the window was closed); ``lateness_s`` is the allowance. Within a window, order of
arrival does not matter (rows are read sorted by time). A signal carried past its last report
(``state``, a held signal, any signal after a quiet close) may get reports stamped behind the
cursor: the rows already scored keep their scores, but the newest such report is read back and
carried from the cursor on (a step reads only from the cursor, so it would otherwise never be
seen, and every later row would use the stale value) — and when it differs from the value the
scored rows used, it is logged (WARNING) and counted (``zhizao_scoring_late_changes_total``).

Model changes (promotion, rollback) are picked up by :meth:`MachineWorker.refresh_model`: open
episodes of the old model are resolved at the cursor, the new model starts with fresh windows at
the cursor (no window is skipped or scored twice). A model that cannot be loaded is refused with
its reason (:meth:`~analytics.registry.ModelRegistry.load`: library versions, a corrupted artifact,
metadata that is another scope's or version's or does not describe its artifact, and — checked
against the catalogue — a model reading a signal this machine does not have): the machine is
reported (``model_mismatch``) and not scored — its cursor waits, so once a usable model is
promoted it catches up without a gap. A refusal is retried when the active version or the
machine's signals change. A model loaded while the machine had no data yet (nothing to check its
signals against) is checked when the machine's signals appear or change, and refused then as a
load would be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, replace

import numpy as np

from analytics.errors import ModelMismatch, RegistryError
from analytics.events import EventEmitter
from analytics.registry import ModelRegistry, UnusableModel, signal_problem
from analytics.scoring.context import HEALTH, STATE_PREFIX, model_scope, score_signal, signal_columns
from analytics.scoring.live import MachineScorer
from analytics.scoring.model import AnomalyModel
from analytics.scoring.rows import LateReport, Rows, aligned_rows, carried, last_bucket
from analytics.scoring.service import metrics as m
from analytics.scoring.service.config import ServiceConfig
from analytics.scoring.service.source import ScoreIO
from analytics.scoring.service.state import MachineState, StateStore, asset_key
from ingest.storage.base import BatchKey, SampleFrame, from_us
from zhizao import signals as sig
from zhizao.events import Event

log = logging.getLogger(__name__)
US = 1_000_000


def rule_of(version: str, model: str = HEALTH) -> str:
    """The events' ``rule``: names the model (other than ``health``) and the version that raised
    them: ``model-v0003``, ``energy-model-v0001`` (part of each event's id)."""
    return f"model-{version}" if model == HEALTH else f"{model}-model-{version}"


def batch_id(scope: str, version: str, window_start_us: int) -> str:
    """The id of one window's score batch: model scope (machine path, or ``path#model``), version
    and window start."""
    return f"s.{asset_key(scope)}.{version}.{window_start_us}"


@dataclass
class StepResult:
    rows: int = 0
    windows: int = 0
    events: int = 0


def _iso(us: int) -> str:
    return from_us(us).isoformat().replace("+00:00", "Z")


class MachineWorker:
    """See module docstring. Driven by one task; ``status`` is ``ok`` or the kind of problem."""

    def __init__(self, asset: str, cfg: ServiceConfig, registry: ModelRegistry, states: StateStore,
                 model: str = HEALTH) -> None:
        self.asset = asset
        """The machine path (what is read, and what scores and events are about)."""
        self.model_name = model
        self.scope = model_scope(asset, model)
        """Registry scope, state key, metric label and log name: ``asset`` or ``asset#<model>``."""
        self.signal = score_signal(model)
        self.cfg = cfg
        self.registry = registry
        self.states = states
        self.version: str | None = None
        self.model: AnomalyModel | None = None
        self.scorer: MachineScorer | None = None
        self.state: MachineState | None = None
        self._status = "starting"
        self.status_since = time.time()
        """Wall time the current ``status`` began (``/healthz``)."""
        self.problem = ""
        self.watermark_us: int | None = None
        self._wm_changed_at = 0.0
        self.held: dict[str, int] = {}
        """Model signals carried forward (sample-and-hold) → their last report (µs)."""
        self.ahead_us: dict[str, int] = {}
        """Model signals whose last-seen time is more than ``max_future_s`` ahead of the clock → it."""
        self._still: dict[str, tuple[int, float]] = {}
        """Per model signal behind another one: (its last-seen time, wall time it was first seen so)."""
        self._progress: dict[str, int] = {}
        """Each model signal's last accepted progress (µs): the catalogue's, or up to the horizon."""
        self._last_seen: dict[str, int] = {}
        """The catalogue's last-seen times of the model signals and ``state`` at this step."""
        self._refused: tuple[str, frozenset[str] | None] | None = None
        """The active version last refused, with the machine's signals it was checked against."""
        self._checked: tuple[str, frozenset[str] | None] | None = None
        """The loaded version, with the machine's signals it was last checked against."""
        self._pending_close: list[Event] = []
        self._redelivered_at = 0.0
        self._step_failure: str | None = None

    @property
    def status(self) -> str:
        """``ok``, ``starting`` or the kind of problem (see the service's README)."""
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        if value != self._status:
            self._status, self.status_since = value, time.time()

    # ---- model -------------------------------------------------------------------------------

    def _report(self, status: str, problem: str) -> None:
        if (status, problem) != (self.status, self.problem):
            level = logging.WARNING if status in ("no_model", "missing_signals") else logging.ERROR
            log.log(level, "machine %s: %s: %s", self.scope, status, problem)
            m.FAILURES.labels(status).inc()
        self.status, self.problem, self._step_failure = status, problem, None
        m.UP.labels(self.scope).set(0)

    def step_failed(self, kind: str, problem: str) -> bool:
        """Report a step that raised (``kind``: ``store_unavailable``, ``rejected``, ``state``,
        ``internal``; logged and counted by the service) as the worker's status until a step
        succeeds. ``True`` when it is not the status already (the service logs it then)."""
        new = (kind, problem) != (self.status, self.problem)
        self.status, self.problem, self._step_failure = kind, problem, kind
        m.UP.labels(self.scope).set(0)
        return new

    def step_succeeded(self) -> None:
        """A step returned: a status set by :meth:`step_failed` is cleared."""
        if self._step_failure is not None and self.status == self._step_failure:
            self.status, self.problem = "ok", ""
            m.UP.labels(self.scope).set(1)
        self._step_failure = None

    def refresh_model(self, signals: Collection[str] | None = None) -> None:
        """Load the registry's active model when it changed (see module docstring). ``signals``:
        the machine's signals in the catalogue, which the model's must be among (``None`` or none:
        no data of the machine yet, not checked)."""
        try:
            active = self.registry.active(self.scope)
        except (OSError, ValueError) as exc:
            self._report("registry", f"cannot read the registry: {exc}")
            return
        if active is None:
            self._park()
            self._report("no_model", f"no promoted model for {self.scope} in {self.registry.root}")
            return
        if active == self.version and self.status == "registry":  # the registry is readable again
            self.status, self.problem = "ok", ""
            m.UP.labels(self.scope).set(1)
        attempt = (active, frozenset(signals) if signals else None)
        if active == self.version and self.model is not None and attempt != self._checked:
            # the machine's signals appeared or changed since the loaded model was checked (it may
            # have loaded before the machine had data): checked again, refused as a load would be
            self._checked = attempt
            problem = signal_problem(self.scope, self.model.columns, attempt[1]) if attempt[1] else None
            if problem:
                self._refused = attempt
                self._park()
                self._report("model_mismatch", str(UnusableModel(self.scope, active, problem)))
            return
        if active == self.version or attempt == self._refused:
            return
        try:
            model = self.registry.load(self.scope, active, signals=attempt[1])
        except (ModelMismatch, RegistryError, OSError, ValueError) as exc:
            self._refused = attempt
            self._park()
            self._report("model_mismatch", str(exc) if isinstance(exc, UnusableModel)
                         else f"model {active} refused: {exc}")
            return
        self._refused = None
        old = self.version
        try:
            self._switch(active, model)
        except ValueError:
            return  # unreadable state file: reported by _load_state, the machine waits
        self._checked = attempt
        log.info("machine %s: scoring with model %s%s", self.scope, active, f" (was {old})" if old else "")

    def _park(self) -> None:
        """Stop scoring (the promoted model is unusable or gone); the cursor and state stay."""
        if self.version is not None:
            m.MODEL.labels(self.scope, self.version).set(0)
        self.version, self.model, self.scorer = None, None, None

    def _switch(self, version: str, model: AnomalyModel) -> None:
        if self.version is not None:
            m.MODEL.labels(self.scope, self.version).set(0)
        saved = self.state if self.state is not None else self._load_state()
        scorer = MachineScorer(self.asset, model, rule=rule_of(version, self.model_name),
                               open_after_s=self.cfg.open_after_s, clear_after_s=self.cfg.clear_after_s,
                               hold_across_gaps=self.cfg.hold_across_gaps, top_k=self.cfg.top_k,
                               signal=self.signal)
        if saved is not None and saved.version == version and saved.scorer is not None:
            scorer.restore(saved.scorer)
        elif saved is not None:
            # another model scored before: its open episodes end at the cursor, the new one starts fresh
            if saved.scorer is not None and saved.version != version:
                old = (self.scorer if self.scorer is not None and self.version == saved.version
                       else self._old_scorer(saved))
                if old is not None:  # added: a quick promote-then-rollback keeps the first resolve
                    self._pending_close += old.tracker.close_all(from_us(saved.cursor_us))
            saved = MachineState(asset=self.scope, version=version, cursor_us=saved.cursor_us,
                                 scorer=scorer.snapshot(), last_row_us=None, carry=saved.carry,
                                 carry_state=saved.carry_state, pending=saved.pending, seen=saved.seen,
                                 held=saved.held)
        self.version, self.model, self.scorer, self.state = version, model, scorer, saved
        m.MODEL.labels(self.scope, version).set(1)
        self.status, self.problem = "ok", ""
        m.UP.labels(self.scope).set(1)

    def _old_scorer(self, saved: MachineState) -> MachineScorer | None:
        """The previous model's scorer at the cursor (only its episode tracker is used)."""
        try:
            old_model = self.registry.load(self.scope, saved.version)
            old = MachineScorer(self.asset, old_model, rule=rule_of(saved.version, self.model_name),
                                signal=self.signal)
            assert saved.scorer is not None
            old.restore(saved.scorer)
        except (ModelMismatch, RegistryError, OSError, ValueError, TypeError) as exc:
            log.warning("machine %s: open episodes of %s not resolved (%s)", self.scope, saved.version, exc)
            return None
        return old

    def _load_state(self) -> MachineState | None:
        try:
            return self.states.load(self.scope)
        except ValueError as exc:
            self._report("state", str(exc))
            raise

    # ---- scoring -----------------------------------------------------------------------------

    def uses_state(self) -> bool:
        """The model keeps ``running`` rows only, or sees the state as columns: ``state`` is read."""
        assert self.model is not None
        return self.model.states != "all" or any(c.startswith(STATE_PREFIX) for c in self.model.columns)

    async def watermark(self, io: ScoreIO, last_seen_us: dict[str, int], now_wall: float) -> int | None:
        """The watermark (µs) from the catalogue's last-seen times of the machine's signals:
        the slowest model signal's progress, where a held signal counts as far as the newest of
        the others and a time beyond the horizon (``now_wall + max_future_s``) is replaced by the
        signal's last data before it (module docstring). ``None`` when a model signal has no data
        yet (reported as ``missing_signals``) or none before the horizon (the machine waits).
        Raises what ``io`` raises (a future stamp needs a read)."""
        assert self.model is not None
        signals = signal_columns(self.model.columns)
        missing = [c for c in signals if c not in last_seen_us]
        if missing:
            self._report("missing_signals", f"model signals {missing} have no data in the catalogue")
            return None
        if self.status == "missing_signals":
            self.status, self.problem = "ok", ""
            m.UP.labels(self.scope).set(1)
        self._last_seen = {c: last_seen_us[c] for c in [*signals, sig.STATE] if c in last_seen_us}
        progress = await self._below_horizon(io, {c: last_seen_us[c] for c in signals}, now_wall)
        if progress is None:
            return None
        wm = self._hold(progress, now_wall)
        if wm != self.watermark_us:
            self.watermark_us, self._wm_changed_at = wm, now_wall
        return wm

    async def _below_horizon(self, io: ScoreIO, seen: dict[str, int], now_wall: float
                             ) -> dict[str, int] | None:
        """Each signal's progress: its last-seen time, or for one stamped beyond the horizon its
        last data before the horizon (searched from its last accepted progress, else from the
        cursor, else as far back as a new machine is read). Counts and logs what is ahead."""
        horizon = int((now_wall + self.cfg.max_future_s) * US)
        progress: dict[str, int] = {}
        ahead = {c: t for c, t in seen.items() if t > horizon}
        self._note_ahead(ahead, now_wall)
        for c, t in seen.items():
            if c not in ahead:
                progress[c] = t
                continue
            lo = self._progress.get(c)
            if lo is None and self.state is not None:
                lo = self.state.cursor_us - int(self.cfg.lookback_s * US)
            if lo is None:
                lo = horizon - int(max(self.cfg.backfill_s, self.cfg.lookback_s,
                                       self.cfg.window_s + self.cfg.lateness_s) * US)
            got = await last_bucket(io, self.asset, c, start_us=min(lo, horizon - 1), end_us=horizon,
                                    bucket_s=self.cfg.bucket_s)
            if got is not None:
                progress[c] = got[0]
            elif c in self._progress:
                progress[c] = self._progress[c]
            else:
                return None  # nothing before the horizon: its progress is unknown, the machine waits
        self._progress = progress
        return progress

    def _note_ahead(self, ahead: dict[str, int], now_wall: float) -> None:
        for c, t in ahead.items():
            if self.ahead_us.get(c) != t:
                m.FUTURE.labels(self.scope, c).inc()
        if set(ahead) != set(self.ahead_us):
            if ahead:
                named = ", ".join(f"{c} {t / US - now_wall:.0f} s ahead (last seen {_iso(t)})"
                                  for c, t in sorted(ahead.items()))
                log.warning("machine %s: data stamped more than max_future_s (%g s) ahead of this service's "
                            "clock: %s; it does not advance the watermark (the signal's data up to the "
                            "horizon does) — check the device's clock", self.scope, self.cfg.max_future_s,
                            named)
            else:
                log.info("machine %s: no data ahead of the clock any more", self.scope)
        self.ahead_us = ahead
        m.AHEAD.labels(self.scope).set(max((t / US - now_wall for t in ahead.values()), default=0.0))

    def _hold(self, progress: dict[str, int], now_wall: float) -> int:
        """The watermark from the signals' progress with sample-and-hold (module docstring)."""
        before = (self.state.held or {}) if self.state is not None else {}
        held: dict[str, int] = {}
        effective: dict[str, int] = {}
        for c, t in progress.items():
            newest_other = max((u for o, u in progress.items() if o != c), default=None)
            effective[c] = t
            if newest_other is None or newest_other <= t:
                self._still.pop(c, None)
                continue
            still = self._still.get(c)
            if still is None or still[0] != t:  # held at the last save with this same report: at once
                still = (t, now_wall - self.cfg.hold_after_s if before.get(c) == t else now_wall)
                self._still[c] = still
            if now_wall - still[1] >= self.cfg.hold_after_s:
                held[c] = t
                effective[c] = newest_other
        for c in sorted(held.keys() - self.held.keys()):
            log.info("machine %s: %s has not reported since %s (%g s while the other signals advanced): "
                     "held — its last value is carried forward", self.scope, c, _iso(held[c]),
                     self.cfg.hold_after_s)
        for c in sorted(self.held.keys() - held.keys()):
            log.info("machine %s: %s reported again: no longer held", self.scope, c)
        self.held = held
        m.HELD.labels(self.scope).set(len(held))
        return min(effective.values())

    def closed_end(self, wm: int, now_wall: float) -> int:
        """End (µs) of the last closed window given the watermark ``wm`` (module docstring)."""
        w = int(self.cfg.window_s * US)
        end = (wm - int(self.cfg.lateness_s * US)) // w * w
        if now_wall - self._wm_changed_at >= self.cfg.quiet_close_s:
            end = max(end, (wm // w + 1) * w)
        return end

    async def step(self, io: ScoreIO, emitter: EventEmitter | None, last_seen_us: dict[str, int],
                   now_wall: float) -> StepResult:
        """Score the closed windows after the cursor (at most ``max_windows_per_round``).

        Raises what ``io`` raises (``StoreUnavailable``, ``Rejected``): the state then stays at
        the previous cursor and the in-memory scorer is rebuilt from it.
        """
        if self.scorer is None or self.model is None or self.version is None:
            return StepResult()
        wm = await self.watermark(io, last_seen_us, now_wall)
        if wm is None:
            return StepResult()
        end = self.closed_end(wm, now_wall)
        w = int(self.cfg.window_s * US)
        if self.state is None:
            start = (wm - int(self.cfg.backfill_s * US)) // w * w
            self.state = MachineState(asset=self.scope, version=self.version, cursor_us=start,
                                      scorer=self.scorer.snapshot())
        st = self.state
        n = min((end - st.cursor_us) // w, self.cfg.max_windows_per_round)
        self._gauges()
        if n <= 0:
            due = now_wall - self._redelivered_at >= self.cfg.redeliver_s
            if (st.pending or self._pending_close) and due:
                self._redelivered_at = now_wall
                pending = await self._deliver(emitter, st, [])
                self.states.save(replace(st, pending=pending))
                self.state, self._pending_close = replace(st, pending=pending), []
            return StepResult()
        until = st.cursor_us + n * w
        try:
            return await self._step(io, emitter, st, until, w)
        except BaseException:
            # nothing of this step is kept in memory: the next try starts from the saved state
            assert st.scorer is not None
            self.scorer.restore(st.scorer)
            raise

    async def _step(self, io: ScoreIO, emitter: EventEmitter | None, st: MachineState, until: int,
                    w: int) -> StepResult:
        assert self.scorer is not None and self.model is not None and self.version is not None
        got, late = await self._rows(io, st, until)
        ts, X, running = got.ts, got.values, got.running
        resets = None
        if len(ts):
            prev = np.r_[st.last_row_us if st.last_row_us is not None else ts[0], ts[:-1]]
            resets = (ts - prev) > int(self.cfg.max_gap_s * US)
        frame, events = self.scorer.process(ts, X, running, resets)
        windows = await self._write(io, frame, st.cursor_us, w)
        last_row = int(ts[-1]) if len(ts) else st.last_row_us
        pending = await self._deliver(emitter, st, events)
        new = MachineState(asset=self.scope, version=self.version, cursor_us=until,
                           scorer=self.scorer.snapshot(), last_row_us=last_row, carry=got.carry,
                           carry_state=got.carry_state, pending=pending, seen=dict(self._last_seen),
                           held=dict(self.held))
        self.states.save(new)
        self.state, self._pending_close = new, []
        for r in late:  # after the save: a step redone after a failure does not count them twice
            m.LATE_CHANGES.labels(self.scope, r.signal).inc()
            log.warning("machine %s: %s was reported %r at %s (first of the reports that arrived behind "
                        "the cursor %s) while %r was carried: the rows already scored keep their scores "
                        "(late data); from the cursor on %r is carried", self.scope, r.signal, r.value,
                        _iso(r.first_us), _iso(r.cursor_us), r.carried, r.value)
        rows = len(frame)
        m.ROWS.labels(self.scope).inc(rows)
        m.WINDOWS.labels(self.scope).inc((until - st.cursor_us) // w)
        m.EVENTS.labels(self.scope).inc(len(events))
        self._gauges()
        return StepResult(rows=rows, windows=windows, events=len(events))

    async def _write(self, io: ScoreIO, frame: SampleFrame, cursor_us: int, w: int) -> int:
        """One batch per window (id from machine, model version, window start), all handed to
        ``io`` together; every one must be durable before the step counts as done."""
        if not len(frame):
            return 0
        assert self.version is not None
        fts = np.asarray(frame.ts_us, dtype=np.int64)
        idx = (fts - cursor_us) // w
        bounds = np.flatnonzero(np.diff(idx)) + 1
        parts = []
        for a, b in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(fts)].tolist(), strict=True):
            window = cursor_us + int(idx[a]) * w
            key = BatchKey(self.cfg.producer, batch_id(self.scope, self.version, window))
            parts.append((_slice(frame, a, b), key))
        results = await io.write_many(parts)
        m.DUPLICATES.labels(self.scope).inc(sum(r.duplicate for r in results))
        return len(parts)

    async def _deliver(self, emitter: EventEmitter | None, st: MachineState, events: list[Event]
                       ) -> dict[str, Event]:
        """Send the saved undelivered updates and the new ones (latest per episode id); returns
        what is still undelivered (every sink must have taken it), bounded by ``max_pending_events``
        — the oldest beyond it are dropped, logged and counted."""
        pending = dict(st.pending)
        for e in [*self._pending_close, *events]:
            pending.pop(e.id, None)  # re-inserted last: newest at the end
            pending[e.id] = e
        if await self._emit(emitter, list(pending.values())):
            return {}
        if len(pending) > self.cfg.max_pending_events:
            drop = list(pending)[: len(pending) - self.cfg.max_pending_events]
            log.error("machine %s: %d undelivered event updates dropped (ids %s)", self.scope, len(drop),
                      ", ".join(drop[:10]))
            m.FAILURES.labels("events_dropped").inc(len(drop))
            for k in drop:
                del pending[k]
        return pending

    async def _emit(self, emitter: EventEmitter | None, events: list[Event]) -> bool:
        """One attempt per sink (``once``): what a sink did not take stays pending and is
        redelivered with the next step or after ``redeliver_s``, so a sink that hangs or is down
        never holds this step — and the other machines' steps behind it — for inline retries."""
        if emitter is None or not events:
            return True
        results = await emitter.emit(events, once=True)
        return all(results.values())

    def _gauges(self) -> None:
        if self.state is None:
            return
        m.CURSOR.labels(self.scope).set(self.state.cursor_us / US)
        if self.watermark_us is not None:
            m.LAG.labels(self.scope).set(max(self.watermark_us - self.state.cursor_us, 0) / US)

    async def _rows(self, io: ScoreIO, st: MachineState, end_us: int) -> tuple[Rows, list[LateReport]]:
        """Aligned rows with ``cursor <= ts < end_us`` (module docstring). The last known values and
        state are carried from the previous step (:meth:`_carried`); the first step reads
        ``lookback_s`` earlier."""
        assert self.model is not None
        columns = self.model.columns
        first = st.carry is None or any(c not in st.carry for c in signal_columns(columns))
        read_from = st.cursor_us - (int(self.cfg.lookback_s * US) if first else 0)
        carry, carry_state, late = await self._carried(io, st, read_from)
        rows = await aligned_rows(io.query, self.asset, columns, start_us=st.cursor_us, end_us=end_us,
                                  read_from_us=read_from, bucket_s=self.cfg.bucket_s, carry=carry,
                                  carry_state=carry_state)
        return rows, late

    async def _carried(self, io: ScoreIO, st: MachineState, read_from: int
                       ) -> tuple[dict[str, float] | None, str | None, list[LateReport]]:
        """The values to carry into this step's rows: the saved ones, corrected from the store
        where the catalogue says the saved ones miss a report (:func:`~analytics.scoring.rows.carried`:
        a value reported before ``read_from`` and not carried yet; reports stamped behind the
        cursor that arrived since the last step — the newest carried from the cursor on, a
        contradicting one a :class:`~analytics.scoring.rows.LateReport`)."""
        assert self.model is not None
        wanted = signal_columns(self.model.columns) + ([sig.STATE] if self.uses_state() else [])
        got = await carried(io, self.asset, wanted, last_seen=self._last_seen, seen_before=st.seen,
                            carry=st.carry, carry_state=st.carry_state, cursor_us=st.cursor_us,
                            read_from_us=read_from, bucket_s=self.cfg.bucket_s)
        return got.carry, got.carry_state, got.late


def _slice(frame: SampleFrame, a: int, b: int) -> SampleFrame:
    return SampleFrame(asset=frame.asset[a:b], signal=frame.signal[a:b], ts_us=frame.ts_us[a:b],
                       vtype=frame.vtype[a:b], value=frame.value[a:b], value_str=frame.value_str[a:b],
                       unit=frame.unit[a:b], quality=frame.quality[a:b])
