"""Publishing MQTT-native machines' payloads to a broker (the only module importing ``aiomqtt``).

Machines do not wait for brokers, so publishing never blocks the simulation: :meth:`publish`
hands the message to the client and returns at once; the broker's acknowledgement (QoS 1/2) is
awaited in the background, and ``on_published`` is called when it arrives.

Policy while the broker is unreachable: ``drop_while_disconnected`` — every message that could
not be published (not connected, or no acknowledgement within ``ack_timeout_s``, or more than
``max_inflight`` awaiting acknowledgement) is counted in :attr:`MqttPublisher.dropped` and logged
(the first, then every 1000th); the publisher reconnects in the background with capped, jittered
backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from types import TracebackType

import aiomqtt

from zhizao.backoff import Backoff
from zhizao.errors import ConnectionLost

log = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes to one broker. Use as ``async with`` (entering raises ``ConnectionLost`` if the
    broker cannot be reached at all); call :meth:`publish` from the loop that entered it. On exit
    it waits up to ``ack_timeout_s`` for outstanding acknowledgements."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        ack_timeout_s: float = 5.0,
        max_inflight: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id or f"zhizao-sim-{os.getpid()}"
        self.ack_timeout_s = ack_timeout_s
        self.max_inflight = max_inflight
        self.published = 0
        self.dropped = 0
        self._client: aiomqtt.Client | None = None
        self._backoff = Backoff(initial=0.5, cap=10.0)
        self._retry_at = 0.0
        self._connecting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MqttPublisher:
        try:
            await self._connect()
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(f"cannot connect to MQTT broker {self.host}:{self.port}: {exc}") from exc
        return self

    async def flush(self) -> None:
        """Wait (up to ``ack_timeout_s`` + 1 s) until every queued message is acknowledged or dropped."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self.ack_timeout_s + 1.0)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.flush()
        for task in [*self._pending, *([self._connecting] if self._connecting else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    async def _connect(self) -> None:
        client = aiomqtt.Client(self.host, self.port, identifier=self.client_id, timeout=self.ack_timeout_s)
        await client.__aenter__()
        self._client = client
        self._backoff.reset()

    async def _reconnect(self) -> None:
        try:
            await self._connect()
            log.info("reconnected to MQTT broker %s:%d", self.host, self.port)
        except aiomqtt.MqttError as exc:
            self._retry_at = time.monotonic() + self._backoff.next()
            log.debug("MQTT reconnect failed: %s", exc)
        finally:
            self._connecting = None

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    def _lost(self, client: aiomqtt.Client, why: object) -> None:
        if self._client is client:
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.host, self.port, why)
            self._client = None
            self._retry_at = time.monotonic() + self._backoff.next()
            task = asyncio.create_task(_close(client))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _drop(self) -> None:
        if self.dropped % 1000 == 0:
            log.warning("MQTT broker unreachable: dropped %d message(s) so far", self.dropped + 1)
        self.dropped += 1

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, on_published: Callable[[], None] | None = None
    ) -> bool:
        """Queue one message; False (counted as dropped) if it cannot be sent now. Never blocks."""
        if self._client is None:
            if self._connecting is None and time.monotonic() >= self._retry_at:
                self._connecting = asyncio.create_task(self._reconnect())
            self._drop()
            return False
        if len(self._pending) >= self.max_inflight:
            self._drop()
            return False
        task = asyncio.create_task(self._publish(self._client, topic, payload, qos, on_published))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _publish(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        qos: int,
        on_published: Callable[[], None] | None,
    ) -> None:
        try:
            await client.publish(topic, payload, qos=qos, timeout=self.ack_timeout_s)
        except (TimeoutError, aiomqtt.MqttError) as exc:
            self._drop()
            self._lost(client, exc)
            return
        self.published += 1
        if on_published is not None:
            on_published()


async def _close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        await client.__aexit__(None, None, None)
