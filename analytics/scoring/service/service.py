"""The scoring service's loop: machines from the catalogue, models from the registry, rounds.

Every ``interval_s`` one round: the catalogue of each configured scope is read (it names the
machines and gives each signal's last-seen time, the watermark), then every machine with a usable
promoted model scores its closed windows (:class:`~.machine.MachineWorker`). Every
``registry_poll_s`` new machines are picked up and each machine's active model is re-checked, so a
promotion or a rollback takes effect without a restart. Each model named in ``models`` (``health``,
``energy``, ...) is a worker of its own per machine, named by its registry scope (``asset`` or
``asset#model``) in logs, metrics and ``/healthz``.

Failures never end the loop. The catalogue unreadable — the store (or ingest) unreachable
(``zhizao_scoring_failures_total{kind="store_unavailable"}``) or the request refused (4xx:
``rejected``, logged with what to check: the token, the URL's prefix) — the round stops, the
failure is logged and counted and the next round comes after a capped, jittered backoff (1 s
doubling to 60 s); so does a round in which every machine found the store unavailable. One
machine's step failing (its read or write unavailable or refused, its state not saved, a bug) is
counted, logged, shown as that machine's ``status`` in ``/healthz`` until a step succeeds, and
retried next round while the other machines go on; a machine whose model cannot be loaded is
reported (``/healthz``, log, metric) and skipped.
``max_rows_per_s`` paces the service (a catch-up after an outage would otherwise take CPU from
ingest on a shared box).

Health contract (:meth:`ScoringService.liveness`, :meth:`~ScoringService.readiness`):

* **liveness** (``/livez``) fails only when the loop is wedged — no round and no machine step
  ended for ``health.wedged_after_s`` — the one state a restart fixes. An outage, a refused
  token or a failing machine never fails it (a restart would not bring ingest back, and the
  service resumes from its cursors by itself);
* **readiness** (``/readyz``, and ``/healthz`` with the whole document): ``ready`` once a round
  has succeeded, every machine with a promoted model is scored and rounds keep succeeding;
  ``degraded`` (503) while any machine has a failing status (:data:`FAILING`: its model refused,
  its signals missing, its reads or writes failing, its state not saved — ``no_model`` is not a
  failure: a machine under a scope prefix may have no model); ``unhealthy`` (503) when no round
  has succeeded for ``health.stall_after_s``; ``starting`` (503) before the first one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Self

from analytics.events import EventEmitter, build_emitter
from analytics.registry import ModelRegistry
from analytics.scoring.context import model_scope
from analytics.scoring.service import metrics as m
from analytics.scoring.service.config import ServiceConfig
from analytics.scoring.service.machine import MachineWorker, StepResult
from analytics.scoring.service.source import IngestApiIO, ScoreIO, StoreIO
from analytics.scoring.service.state import StateStore
from ingest.storage.base import CatalogueEntry, Store, to_us
from zhizao.backoff import Backoff
from zhizao.errors import Rejected, StoreUnavailable, Unavailable
from zhizao.events import Event
from zhizao.model import LEVELS
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)

FAILING: frozenset[str] = frozenset({"model_mismatch", "missing_signals", "registry", "state",
                                     "store_unavailable", "rejected", "internal"})
"""Machine statuses that make the service ``degraded`` (``/readyz``, ``/healthz`` 503)."""


class StoreEventSink:
    """Event sink writing straight into the store (``[storage]`` mode: no ingest to POST to)."""

    name = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, events: Sequence[Event]) -> None:
        try:
            await self.store.upsert_events(events)
        except StoreUnavailable as exc:
            raise Unavailable(f"store: {exc}") from exc


def make_io(cfg: ServiceConfig) -> ScoreIO:
    if cfg.ingest is not None:
        return IngestApiIO(cfg.ingest, concurrency=cfg.write_concurrency)
    assert cfg.storage is not None
    return StoreIO(cfg.storage)


def make_emitter(cfg: ServiceConfig, io: ScoreIO) -> EventEmitter:
    """The configured sinks, plus the events' home when it is not configured: ingest's
    ``/api/v1/events`` (``[ingest]`` mode) or the store itself (``[storage]`` mode)."""
    emitter = build_emitter(cfg.sinks)  # logs the sinks' plaintext warnings
    for warning in cfg.ingest.plaintext_warnings() if cfg.ingest is not None else []:
        log.warning("%s", warning)
    if isinstance(io, StoreIO):
        emitter.sinks.append(StoreEventSink(io.store))
    elif cfg.sinks.ingest is None and cfg.ingest is not None:
        from analytics.events.sinks.http import IngestSink

        emitter.sinks.append(IngestSink(cfg.ingest.url, cfg.ingest.bearer(), cfg.ingest.timeout_s))
    return emitter


class ScoringService:
    """See module docstring. ``run()`` until ``stop()``; one instance per state folder."""

    def __init__(self, cfg: ServiceConfig, io: ScoreIO | None = None) -> None:
        self.cfg = cfg
        self.io = io or make_io(cfg)
        self.registry = ModelRegistry(cfg.registry)
        self.states = StateStore(cfg.state_dir)
        self.workers: dict[str, MachineWorker] = {}
        self.rounds = 0
        self.failures: dict[str, int] = {}
        self.started = time.time()
        self.last_ok: float | None = None
        self.last_error = ""
        self.rows = 0
        self.events = 0
        self.last_turn = time.monotonic()
        """Monotonic time the loop last ended a round or a machine step (liveness)."""
        self._last_poll = float("-inf")
        self._stop = asyncio.Event()
        self._readiness: str | None = None
        self._resumes_at = 0.0
        """Monotonic time the loop's wait between rounds ends (a wait, even a long backoff, is not wedged)."""
        self._wedged = False

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        emitter = make_emitter(self.cfg, self.io)
        async with self.io, emitter:
            if ready is not None:
                ready.set()
            backoff = Backoff(initial=1.0, cap=60.0)
            while not self._stop.is_set():
                ok = await self.round(emitter)
                if ok:
                    backoff.reset()
                delay = self.cfg.interval_s if ok else max(self.cfg.interval_s, backoff.next())
                self._resumes_at = time.monotonic() + delay
                await wait_event(self._stop, delay)

    def _fail(self, kind: str, exc: BaseException) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        self.last_error = f"{kind}: {exc}"
        m.FAILURES.labels(kind).inc()

    async def round(self, emitter: EventEmitter | None, now: float | None = None) -> bool:
        """One round (module docstring); ``False`` (back off) when the catalogue could not be read,
        or when every machine that tried a step found the store unavailable."""
        t0 = time.monotonic()
        self.rounds += 1
        now = time.time() if now is None else now
        try:
            try:
                seen = await self._catalogue()
            except StoreUnavailable as exc:
                self._fail("store_unavailable", exc)
                log.warning("scoring round failed (store unavailable), retrying with backoff: %s", exc)
                return False
            except Rejected as exc:
                self._fail("rejected", exc)
                log.error("scoring round failed: the catalogue request was refused (%s); check the [ingest] "
                          "token (revoked, or without the read scope) and url (its path prefix); retrying "
                          "with backoff", exc)
                return False
            if now - self._last_poll >= self.cfg.registry_poll_s:
                self._poll(seen)
                self._last_poll = now
            stepped = unavailable = 0
            for worker in self.workers.values():
                res = await self._step(worker, emitter, seen.get(worker.asset, {}), now)
                if res is None:
                    unavailable += worker.status == "store_unavailable"
                    continue
                stepped += worker.version is not None
                self.rows += res.rows
                self.events += res.events
            if unavailable and not stepped:  # the store is down for everyone: back off, /healthz sees it
                log.warning("scoring round failed (store unavailable for every machine), retrying with "
                            "backoff: %s", self.last_error)
                return False
        finally:
            self.last_turn = time.monotonic()
            m.ROUND_SECONDS.set(self.last_turn - t0)
        self.last_ok = time.time()
        return True

    async def _step(self, worker: MachineWorker, emitter: EventEmitter | None, seen: dict[str, int],
                    now: float) -> StepResult | None:
        """One machine's step in the supervisor loop: a failure is counted, logged (once while it
        repeats) and shown as the machine's status, and never stops the other machines; ``None``
        then (the step is retried next round)."""
        t_step = time.monotonic()
        try:
            return await self._supervised(worker, emitter, seen, now, t_step)
        finally:
            self.last_turn = time.monotonic()

    async def _supervised(self, worker: MachineWorker, emitter: EventEmitter | None, seen: dict[str, int],
                          now: float, t_step: float) -> StepResult | None:
        """:meth:`_step` without the liveness mark: the step, its failure handling and pacing."""
        try:
            res = await worker.step(self.io, emitter, seen, now)
        except Rejected as exc:
            if worker.step_failed("rejected", str(exc)):
                log.error("machine %s: request refused, retried every round: %s", worker.scope, exc)
            self._fail("rejected", exc)
            return None
        except StoreUnavailable as exc:  # this machine's reads or writes (5xx, timeout): retried next round
            if worker.step_failed("store_unavailable", str(exc)):
                log.warning("machine %s: store unavailable, retried every round: %s", worker.scope, exc)
            self._fail("store_unavailable", exc)
            return None
        except OSError as exc:  # the state folder (disk full, permissions): the step is redone
            if worker.step_failed("state", f"cannot save its state: {exc}"):
                log.error("machine %s: cannot save its state, the step is redone: %s", worker.scope, exc)
            self._fail("state", exc)
            return None
        except Exception as exc:  # the supervisor loop: one machine's bug never stops the others
            worker.step_failed("internal", f"{type(exc).__name__}: {exc}")
            self._fail("internal", exc)
            log.exception("machine %s: step failed, retried next round", worker.scope)
            return None
        worker.step_succeeded()
        if self.cfg.max_rows_per_s > 0 and res.rows:  # pace catch-ups: leave CPU to ingest
            await asyncio.sleep(max(0.0, res.rows / self.cfg.max_rows_per_s - (time.monotonic() - t_step)))
        return res

    async def _catalogue(self) -> dict[str, dict[str, int]]:
        """machine -> signal -> last seen (µs) under every configured scope."""
        out: dict[str, dict[str, int]] = {}
        entries: list[CatalogueEntry] = []
        for scope in self.cfg.scopes:
            entries += await self.io.catalogue(scope)
        for e in entries:
            out.setdefault(e.asset, {})[e.signal] = to_us(e.last_seen)
        return out

    def _poll(self, seen: dict[str, dict[str, int]]) -> None:
        wanted = {s for s in self.cfg.scopes if len(s.split("/")) == len(LEVELS)}
        wanted |= set(seen)
        for asset in sorted(wanted):
            for model in self.cfg.models:
                scope = model_scope(asset, model)
                if scope not in self.workers:
                    log.info("machine %s: found", scope)
                    self.workers[scope] = MachineWorker(asset, self.cfg, self.registry, self.states, model)
        for worker in self.workers.values():
            worker.refresh_model(seen.get(worker.asset))

    def liveness(self, now_mono: float | None = None) -> tuple[bool, dict[str, Any]]:
        """``(alive, document)`` for ``/livez``: not alive only when no round and no machine step
        ended for ``health.wedged_after_s`` beyond the loop's planned wait (module docstring)."""
        idle = (time.monotonic() if now_mono is None else now_mono) - max(self.last_turn, self._resumes_at)
        wedged = idle > self.cfg.health.wedged_after_s
        problem = (f"the scoring loop has ended no round and no machine step for {idle:.0f} s "
                   f"(health.wedged_after_s {self.cfg.health.wedged_after_s:g} s)")
        if wedged != self._wedged:
            self._wedged = wedged
            if wedged:
                log.error("scoring service wedged: %s; /livez answers 503", problem)
            else:
                log.info("scoring loop turning again")
        if wedged:
            return False, {"status": "wedged", "problem": problem}
        return True, {"status": "alive"}

    def readiness(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """``(ready, document)`` for ``/readyz`` and ``/healthz`` (module docstring): the document
        has ``status`` (``ready``, ``degraded``, ``unhealthy``, ``starting``), ``problems`` in
        words and ``failing`` (each failing machine's scope, status, problem and since when;
        :meth:`health` adds the figures). Logs each change of ``status`` once."""
        now = time.time() if now is None else now
        problems = []
        if self.last_ok is None:
            status = "starting"
            problems.append(f"no successful round yet{': ' + self.last_error if self.last_error else ''}")
            if now - self.started > self.cfg.health.stall_after_s:
                status = "unhealthy"
        elif now - self.last_ok > self.cfg.health.stall_after_s:
            status = "unhealthy"
            problems.append(f"no successful round for {now - self.last_ok:.0f} s: {self.last_error}")
        else:
            status = "ready"
        failing = [{"machine": scope, "status": w.status, "problem": w.problem,
                    "since": _iso(w.status_since)}
                   for scope, w in sorted(self.workers.items()) if w.status in FAILING]
        if failing:
            problems += [f"{f['machine']}: {f['status']}: {f['problem']}" for f in failing]
            if status == "ready":
                status = "degraded"
        if status != self._readiness:
            if status == "ready":
                log.info("scoring service ready: every machine with a model is scored")
            elif self._readiness is not None or status != "starting":
                log.warning("scoring service %s: %s", status, "; ".join(problems))
            self._readiness = status
        doc: dict[str, Any] = {"status": status, "problems": problems, "failing": failing}
        return status == "ready", doc

    def health(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """``(ready, document)`` for ``/healthz``: :meth:`readiness` with the figures — rounds,
        rows scored, event updates, failures by kind — and every machine's status, problem (and
        since when), model, cursor, lag, pending events, held signals and data stamped ahead."""
        now = time.time() if now is None else now
        ready, doc = self.readiness(now)
        machines = []
        for scope, w in sorted(self.workers.items()):
            st = w.state
            machines.append({
                "machine": scope, "status": w.status, "problem": w.problem, "since": _iso(w.status_since),
                "model": w.version,
                "cursor": None if st is None else st.cursor_us / 1e6,
                "lag_s": None if st is None or w.watermark_us is None
                else max(w.watermark_us - st.cursor_us, 0) / 1e6,
                "pending_events": 0 if st is None else len(st.pending),
                "held": {c: _iso(t / 1e6) for c, t in sorted(w.held.items())},
                "ahead_s": {c: round(t / 1e6 - now, 3) for c, t in sorted(w.ahead_us.items())}})
        doc.update({"rounds": self.rounds, "rows_scored": self.rows, "events": self.events,
                    "failures": self.failures, "last_error": self.last_error, "machines": machines})
        return ready, doc


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
