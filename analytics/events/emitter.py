"""The event emitter: one call fans events out to every configured sink.

Delivery is at-least-once per sink: a sink that is unavailable is retried with capped backoff up
to ``max_attempts``; a sink that still fails, or rejects the events permanently, does not stop
the others. Every failure is logged and counted (``zhizao_events_failed_total{sink}``); nothing
is dropped without a trace. Events carry a stable id per episode, so a repeated delivery is an
idempotent upsert for ingest and a duplicate a webhook can recognise.

Sinks are reported, counted and logged by their *label* (:func:`sink_labels`): the sink's name, or
``name[i]`` when several sinks share it (two webhooks: ``webhook[0]``, ``webhook[1]``), so that
``emit``'s result has one entry per sink and one failing webhook is never hidden by another.

A caller that keeps undelivered events and redelivers them itself (the scoring service) emits
with ``once=True``: one attempt per sink, no inline retry, and a sink found unavailable is not
tried again before its backoff has passed (reported undelivered at once) — so a sink that hangs
until its timeout costs one timeout per backoff period, not one per call.

Usage::

    async with EventEmitter([IngestSink(url, token), MqttSink(host, port)]) as emitter:
        await emitter.emit(tracker.observe(asset, ts, active, value))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Self

from prometheus_client import Counter

from analytics.events.sinks.base import Sink
from zhizao.backoff import Backoff
from zhizao.errors import Rejected, Unavailable
from zhizao.events import Event

log = logging.getLogger(__name__)

SENT = Counter("zhizao_events_sent", "Events delivered, by sink", ["sink"])
FAILED = Counter("zhizao_events_failed", "Events not delivered after all attempts, by sink and reason",
                 ["sink", "reason"])


def sink_labels(sinks: Sequence[Sink]) -> list[str]:
    """One label per sink: its ``name``, or ``name[i]`` (``i``: its rank among the sinks of that
    name, in order) when several sinks share the name."""
    total: dict[str, int] = {}
    for s in sinks:
        total[s.name] = total.get(s.name, 0) + 1
    rank: dict[str, int] = {}
    out = []
    for s in sinks:
        if total[s.name] == 1:
            out.append(s.name)
        else:
            out.append(f"{s.name}[{rank.get(s.name, 0)}]")
            rank[s.name] = rank.get(s.name, 0) + 1
    return out


class EventEmitter:
    def __init__(self, sinks: Sequence[Sink], *, max_attempts: int = 5, backoff_initial_s: float = 0.2,
                 backoff_cap_s: float = 5.0) -> None:
        self.sinks = list(sinks)
        self.max_attempts = max_attempts
        self._backoff = (backoff_initial_s, backoff_cap_s)
        self._stack = AsyncExitStack()
        self.failed: dict[str, int] = {}
        """Events not delivered per sink label (also exported as a metric)."""
        self._down: dict[int, tuple[Backoff, float, str]] = {}
        """``id(sink)`` -> (its backoff, monotonic time before which ``once`` emits skip it, why)."""

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        entered: list[Sink] = []
        for sink, label in zip(self.sinks, sink_labels(self.sinks), strict=True):
            try:
                entered.append(await self._stack.enter_async_context(sink))
            except Unavailable as exc:
                # A sink that cannot connect now is retried on each send (it reconnects itself).
                log.warning("event sink %s unavailable at start: %s", label, exc)
                entered.append(sink)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def emit(self, events: Sequence[Event], *, once: bool = False) -> dict[str, bool]:
        """Deliver ``events`` to every sink concurrently; returns sink label -> delivered
        (:func:`sink_labels`). ``once``: one attempt per sink and unavailable sinks held off
        (module docstring)."""
        if not events:
            return {}
        labels = sink_labels(self.sinks)
        results = await asyncio.gather(*(self._deliver(s, label, events, once)
                                         for s, label in zip(self.sinks, labels, strict=True)))
        return dict(zip(labels, results, strict=True))

    async def _deliver(self, sink: Sink, label: str, events: Sequence[Event], once: bool) -> bool:
        if once:
            return await self._once(sink, label, events)
        backoff = Backoff(initial=self._backoff[0], cap=self._backoff[1])
        for attempt in range(1, self.max_attempts + 1):
            try:
                await sink.send(events)
            except Rejected as exc:
                return self._fail(label, events, "rejected", exc)
            except Unavailable as exc:
                if attempt == self.max_attempts:
                    return self._fail(label, events, "unavailable", exc)
                delay = exc.retry_after if exc.retry_after is not None else backoff.next()
                log.info("event sink %s unavailable (attempt %d): %s", label, attempt, exc)
                await asyncio.sleep(min(delay, self._backoff[1]))
            else:
                self._down.pop(id(sink), None)
                SENT.labels(label).inc(len(events))
                return True
        return False

    async def _once(self, sink: Sink, label: str, events: Sequence[Event]) -> bool:
        down = self._down.get(id(sink))
        if down is not None and time.monotonic() < down[1]:
            return self._fail(label, events, "unavailable", f"not tried (held off after: {down[2]})")
        try:
            await sink.send(events)
        except Rejected as exc:
            return self._fail(label, events, "rejected", exc)
        except Unavailable as exc:
            backoff = down[0] if down is not None else Backoff(initial=self._backoff[0], cap=self._backoff[1])
            delay = exc.retry_after if exc.retry_after is not None else backoff.next()
            self._down[id(sink)] = (backoff, time.monotonic() + min(delay, self._backoff[1]), str(exc))
            return self._fail(label, events, "unavailable", exc)
        self._down.pop(id(sink), None)
        SENT.labels(label).inc(len(events))
        return True

    def _fail(self, label: str, events: Sequence[Event], reason: str, exc: Exception | str) -> bool:
        FAILED.labels(label, reason).inc(len(events))
        self.failed[label] = self.failed.get(label, 0) + len(events)
        log.error("event sink %s: %d events not delivered (%s): %s; ids: %s", label, len(events),
                  reason, exc, ", ".join(e.id for e in events))
        return False
