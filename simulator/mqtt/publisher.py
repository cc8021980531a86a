"""Publishing MQTT-native machines' payloads to a broker (the only module importing ``aiomqtt``).

Policy while the broker is unreachable: ``drop_while_disconnected`` — the simulator keeps running
(it models machines, which do not wait for a broker); every message it could not publish is
counted in :attr:`MqttPublisher.dropped` and logged (first one, then every 1000th), and it
reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from types import TracebackType

import aiomqtt

from zhizao.backoff import Backoff
from zhizao.errors import ConnectionLost

log = logging.getLogger(__name__)


class MqttPublisher:
    """Publishes to one broker. Use as ``async with``; :meth:`publish` never raises for a broker
    outage after a successful start (see the module's drop policy); entering raises
    ``ConnectionLost`` if the broker cannot be reached at all."""

    def __init__(self, host: str, port: int, *, client_id: str | None = None) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id or f"zhizao-sim-{os.getpid()}"
        self.published = 0
        self.dropped = 0
        self._client: aiomqtt.Client | None = None
        self._backoff = Backoff(initial=0.5, cap=10.0)
        self._retry_at = 0.0

    async def __aenter__(self) -> MqttPublisher:
        try:
            await self._connect()
        except aiomqtt.MqttError as exc:
            raise ConnectionLost(f"cannot connect to MQTT broker {self.host}:{self.port}: {exc}") from exc
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._disconnect()

    async def _connect(self) -> None:
        client = aiomqtt.Client(self.host, self.port, identifier=self.client_id, timeout=10)
        await client.__aenter__()
        self._client = client
        self._backoff.reset()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish one message; False (and counted as dropped) if the broker is unreachable."""
        if self._client is None and time.monotonic() >= self._retry_at:
            try:
                await self._connect()
                log.info("reconnected to MQTT broker %s:%d", self.host, self.port)
            except aiomqtt.MqttError as exc:
                self._retry_at = time.monotonic() + self._backoff.next()
                log.debug("MQTT reconnect failed: %s", exc)
        if self._client is not None:
            try:
                await self._client.publish(topic, payload, qos=qos)
                self.published += 1
                return True
            except (TimeoutError, aiomqtt.MqttError) as exc:
                log.warning("MQTT publish to %s failed (%s); reconnecting", topic, exc)
                await self._disconnect()
                self._retry_at = time.monotonic() + self._backoff.next()
        if self.dropped % 1000 == 0:
            log.warning("MQTT broker unreachable: dropped %d message(s) so far", self.dropped + 1)
        self.dropped += 1
        return False
