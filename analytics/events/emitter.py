"""The event emitter: one call fans events out to every configured sink.

Delivery is at-least-once per sink: a sink that is unavailable is retried with capped backoff up
to ``max_attempts``; a sink that still fails, or rejects the events permanently, does not stop
the others. Every failure is logged and counted (``zhizao_events_failed_total{sink}``); nothing
is dropped without a trace. Events carry a stable id per episode, so a repeated delivery is an
idempotent upsert for ingest and a duplicate a webhook can recognise.

Usage::

    async with EventEmitter([IngestSink(url, token), MqttSink(host, port)]) as emitter:
        await emitter.emit(tracker.observe(asset, ts, active, value))
"""

from __future__ import annotations

import asyncio
import logging
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


class EventEmitter:
    def __init__(self, sinks: Sequence[Sink], *, max_attempts: int = 5, backoff_initial_s: float = 0.2,
                 backoff_cap_s: float = 5.0) -> None:
        self.sinks = list(sinks)
        self.max_attempts = max_attempts
        self._backoff = (backoff_initial_s, backoff_cap_s)
        self._stack = AsyncExitStack()
        self.failed: dict[str, int] = {}
        """Events not delivered per sink name (also exported as a metric)."""

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        entered: list[Sink] = []
        for sink in self.sinks:
            try:
                entered.append(await self._stack.enter_async_context(sink))
            except Unavailable as exc:
                # A sink that cannot connect now is retried on each send (it reconnects itself).
                log.warning("event sink %s unavailable at start: %s", sink.name, exc)
                entered.append(sink)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def emit(self, events: Sequence[Event]) -> dict[str, bool]:
        """Deliver ``events`` to every sink concurrently; returns sink name -> delivered."""
        if not events:
            return {}
        results = await asyncio.gather(*(self._deliver(s, events) for s in self.sinks))
        return {s.name: ok for s, ok in zip(self.sinks, results, strict=True)}

    async def _deliver(self, sink: Sink, events: Sequence[Event]) -> bool:
        backoff = Backoff(initial=self._backoff[0], cap=self._backoff[1])
        for attempt in range(1, self.max_attempts + 1):
            try:
                await sink.send(events)
            except Rejected as exc:
                return self._fail(sink, events, "rejected", exc)
            except Unavailable as exc:
                if attempt == self.max_attempts:
                    return self._fail(sink, events, "unavailable", exc)
                delay = exc.retry_after if exc.retry_after is not None else backoff.next()
                log.info("event sink %s unavailable (attempt %d): %s", sink.name, attempt, exc)
                await asyncio.sleep(min(delay, self._backoff[1]))
            else:
                SENT.labels(sink.name).inc(len(events))
                return True
        return False

    def _fail(self, sink: Sink, events: Sequence[Event], reason: str, exc: Exception) -> bool:
        FAILED.labels(sink.name, reason).inc(len(events))
        self.failed[sink.name] = self.failed.get(sink.name, 0) + len(events)
        log.error("event sink %s: %d events not delivered (%s): %s; ids: %s", sink.name, len(events),
                  reason, exc, ", ".join(e.id for e in events))
        return False
