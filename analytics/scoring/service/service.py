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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
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
        self._last_poll = float("-inf")
        self._stop = asyncio.Event()

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
            m.ROUND_SECONDS.set(time.monotonic() - t0)
        self.last_ok = time.time()
        return True

    async def _step(self, worker: MachineWorker, emitter: EventEmitter | None, seen: dict[str, int],
                    now: float) -> StepResult | None:
        """One machine's step in the supervisor loop: a failure is counted, logged (once while it
        repeats) and shown as the machine's status, and never stops the other machines; ``None``
        then (the step is retried next round)."""
        t_step = time.monotonic()
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
            worker.refresh_model()

    def health(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """``(healthy, document)``: unhealthy when no round succeeded for ``health.stall_after_s``."""
        now = time.time() if now is None else now
        last = self.last_ok if self.last_ok is not None else self.started
        problems = []
        if now - last > self.cfg.health.stall_after_s:
            problems.append(f"no successful round for {now - last:.0f} s: {self.last_error}")
        machines = []
        for scope, w in sorted(self.workers.items()):
            st = w.state
            machines.append({
                "machine": scope, "status": w.status, "problem": w.problem, "model": w.version,
                "cursor": None if st is None else st.cursor_us / 1e6,
                "lag_s": None if st is None or w.watermark_us is None
                else max(w.watermark_us - st.cursor_us, 0) / 1e6,
                "pending_events": 0 if st is None else len(st.pending)})
        doc = {"status": "unhealthy" if problems else "ok", "problems": problems, "rounds": self.rounds,
               "rows_scored": self.rows, "events": self.events, "failures": self.failures,
               "last_error": self.last_error, "machines": machines}
        return not problems, doc
