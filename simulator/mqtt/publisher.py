"""Publishing MQTT-native machines' payloads to a broker (the only module importing ``aiomqtt``).

Machines do not wait for brokers, so publishing never blocks the simulation: :meth:`publish`
hands the message to the client and returns at once; the broker's acknowledgement (QoS 1/2) is
awaited in the background, and ``on_published`` is called when it arrives.

Policy while the broker is unreachable: ``drop_while_disconnected`` — every message that could
not be published (not connected, or no acknowledgement within ``ack_timeout_s``, or more than
``max_inflight`` awaiting acknowledgement) is counted in :attr:`MqttPublisher.dropped` and logged
(the first, then every 1000th); the publisher reconnects in the background with capped, jittered
backoff. After :meth:`MqttPublisher.flush` (or the exit), ``published + dropped`` is the number of
messages :meth:`MqttPublisher.publish` was given.

A message is *published* only once the broker is known to have received it: at QoS 1/2 its
acknowledgement; at QoS 0, which has none, the answer to a later request on the same connection
(an UNSUBSCRIBE of a topic nobody uses, one at a time, at most every ``confirm_interval_s``: the
broker handles a connection's packets in order). A QoS 0 message written to the socket of a
connection that broke before such an answer came is counted as dropped — counting it as
published when it left the socket hid those that died in the socket buffer with the broker.
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

_PROBE_TOPIC = "zhizao-sim/confirm"
"""Unsubscribed from (never subscribed) to get an answer on a connection: see the module docstring."""


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
        confirm_interval_s: float = 0.02,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id or f"zhizao-sim-{os.getpid()}"
        self.ack_timeout_s = ack_timeout_s
        self.max_inflight = max_inflight
        self.confirm_interval_s = confirm_interval_s
        self.published = 0
        self.dropped = 0
        self._unresolved = 0  # given to a task, neither published nor dropped yet
        self._unconfirmed: dict[aiomqtt.Client, list[Callable[[], None] | None]] = {}
        """QoS 0 messages written to each connection, waiting for a later answer on it."""
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
        """Wait (up to ``2 × ack_timeout_s`` + 1 s) until every queued message is acknowledged
        (QoS 0: confirmed) or dropped."""
        deadline = time.monotonic() + 2 * self.ack_timeout_s + 1.0
        while self._unresolved and (left := deadline - time.monotonic()) > 0:
            waiting = {t for t in self._pending if not t.done()}
            if not waiting:
                break
            await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.flush()
        for task in [*self._pending, *([self._connecting] if self._connecting else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unresolved:  # still awaiting an acknowledgement: never known to have arrived
            log.warning("MQTT: %d message(s) unacknowledged at exit, counted as dropped", self._unresolved)
            self.dropped += self._unresolved
            self._unresolved = 0
        self._unconfirmed.clear()
        await self._disconnect()

    async def _connect(self) -> None:
        client = aiomqtt.Client(self.host, self.port, identifier=self.client_id, timeout=self.ack_timeout_s)
        # aiomqtt warns above 10 publishes awaiting their PUBACK — a line per publish at full speed;
        # this publisher bounds them itself (max_inflight) and counts what it drops
        client.pending_calls_threshold = self.max_inflight
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

    def _drop(self, n: int = 1) -> None:
        if self.dropped // 1000 != (self.dropped + n - 1) // 1000 or self.dropped % 1000 == 0:
            log.warning("MQTT broker unreachable: dropped %d message(s) so far", self.dropped + n)
        self.dropped += n

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
        self._unresolved += 1
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
            self._unresolved -= 1
            self._drop()
            self._lost(client, exc)
            return
        if qos == 0:  # written to the socket: published once a later answer proves it arrived
            waiting = self._unconfirmed.setdefault(client, [])
            waiting.append(on_published)
            if len(waiting) == 1:
                task = asyncio.create_task(self._confirm(client))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
            return
        self._unresolved -= 1
        self.published += 1
        if on_published is not None:
            on_published()

    async def _confirm(self, client: aiomqtt.Client) -> None:
        """Resolve the QoS 0 messages written to ``client``: one UNSUBSCRIBE round trip at a time
        confirms every message written before it (published), a failed one drops them."""
        while waiting := self._unconfirmed.get(client):
            await asyncio.sleep(self.confirm_interval_s)  # one round trip for what comes meanwhile
            n = len(waiting)
            try:
                await client.unsubscribe(_PROBE_TOPIC, timeout=self.ack_timeout_s)
            except (TimeoutError, aiomqtt.MqttError) as exc:
                del waiting[:n]
                self._unresolved -= n
                self._drop(n)
                self._lost(client, exc)
                continue
            done = waiting[:n]
            del waiting[:n]
            self._unresolved -= n
            self.published += n
            for on_published in done:
                if on_published is not None:
                    on_published()
        self._unconfirmed.pop(client, None)


async def _close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        await client.__aexit__(None, None, None)
