"""One model of one machine in the scoring service: its promoted version, its cursor, one step at a time.

A worker scores machine ``asset`` with model ``model`` (``health``, ``energy``, ...: registry scope
``asset`` or ``asset#model``, :mod:`analytics.scoring.context`); a machine with two models has two
workers, each with its own cursor, state file, score series and events.

A step scores the machine's *closed* windows (fixed grid of ``window_s``, aligned to the epoch):
``[a, b)`` is closed once every model signal has data at or after ``b + lateness_s`` (the
watermark is the slowest signal's last-seen time in the catalogue), or once the data stopped
advancing for ``quiet_close_s`` of wall time (then up to the last data). The step reads
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
arrival does not matter (rows are read sorted by time).

Model changes (promotion, rollback) are picked up by :meth:`MachineWorker.refresh_model`: open
episodes of the old model are resolved at the cursor, the new model starts with fresh windows at
the cursor (no window is skipped or scored twice). A model that cannot be loaded (library or
feature mismatch, corrupted artifact) is refused with its reason: the machine is reported and
not scored — its cursor waits, so once a usable model is promoted it catches up without a gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from analytics.errors import ModelMismatch, RegistryError
from analytics.events import EventEmitter
from analytics.registry import ModelRegistry
from analytics.scoring.context import HEALTH, model_scope, score_signal, signal_columns
from analytics.scoring.live import MachineScorer
from analytics.scoring.model import AnomalyModel
from analytics.scoring.rows import Rows, aligned_rows
from analytics.scoring.service import metrics as m
from analytics.scoring.service.config import ServiceConfig
from analytics.scoring.service.source import ScoreIO
from analytics.scoring.service.state import MachineState, StateStore, asset_key
from ingest.storage.base import BatchKey, SampleFrame, from_us
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
        self.status = "starting"
        self.problem = ""
        self.watermark_us: int | None = None
        self._wm_changed_at = 0.0
        self._refused: str | None = None
        self._pending_close: list[Event] = []
        self._redelivered_at = 0.0
        self._step_failure: str | None = None

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

    def refresh_model(self) -> None:
        """Load the registry's active model when it changed (see module docstring)."""
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
        if active in (self.version, self._refused):
            return
        try:
            meta = self.registry.metadata(self.scope, active)
            model = self.registry.load(self.scope, active, features=meta.features)
        except (ModelMismatch, RegistryError, OSError, ValueError) as exc:
            self._refused = active
            self._park()
            self._report("model_mismatch", f"model {active} refused: {exc}")
            return
        self._refused = None
        old = self.version
        try:
            self._switch(active, model)
        except ValueError:
            return  # unreadable state file: reported by _load_state, the machine waits
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
                                 carry_state=saved.carry_state, pending=saved.pending)
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

    def closed_end(self, last_seen_us: dict[str, int], now_wall: float) -> int | None:
        """End (µs) of the last closed window given the signals' last-seen times; ``None`` when a
        model signal has no data yet (reported as ``missing_signals``)."""
        assert self.model is not None
        signals = signal_columns(self.model.columns)
        missing = [c for c in signals if c not in last_seen_us]
        if missing:
            self._report("missing_signals", f"model signals {missing} have no data in the catalogue")
            return None
        if self.status == "missing_signals":
            self.status, self.problem = "ok", ""
            m.UP.labels(self.scope).set(1)
        wm = min(last_seen_us[c] for c in signals)
        if wm != self.watermark_us:
            self.watermark_us, self._wm_changed_at = wm, now_wall
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
        end = self.closed_end(last_seen_us, now_wall)
        if end is None:
            return StepResult()
        w = int(self.cfg.window_s * US)
        if self.state is None:
            assert self.watermark_us is not None
            start = (self.watermark_us - int(self.cfg.backfill_s * US)) // w * w
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
        got = await self._rows(io, st, until)
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
                           carry_state=got.carry_state, pending=pending)
        self.states.save(new)
        self.state, self._pending_close = new, []
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

    async def _rows(self, io: ScoreIO, st: MachineState, end_us: int) -> Rows:
        """Aligned rows with ``cursor <= ts < end_us`` (module docstring). The last known values and
        state are carried from the previous step; the first step reads ``lookback_s`` earlier."""
        assert self.model is not None
        columns = self.model.columns
        first = st.carry is None or any(c not in st.carry for c in signal_columns(columns))
        read_from = st.cursor_us - (int(self.cfg.lookback_s * US) if first else 0)
        return await aligned_rows(io.query, self.asset, columns, start_us=st.cursor_us, end_us=end_us,
                                  read_from_us=read_from, bucket_s=self.cfg.bucket_s, carry=st.carry,
                                  carry_state=st.carry_state)


def _slice(frame: SampleFrame, a: int, b: int) -> SampleFrame:
    return SampleFrame(asset=frame.asset[a:b], signal=frame.signal[a:b], ts_us=frame.ts_us[a:b],
                       vtype=frame.vtype[a:b], value=frame.value[a:b], value_str=frame.value_str[a:b],
                       unit=frame.unit[a:b], quality=frame.quality[a:b])
