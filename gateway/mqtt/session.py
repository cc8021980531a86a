"""One MQTT v5 connection to the plant broker with a persistent session and manual PUBACKs.

``await BrokerSession(...).run(on_message)`` connects (fixed client id, clean start off,
session expiry), subscribes to every filter at QoS 1 and calls ``on_message(msg)`` on the event
loop for each message. The broker's PUBACK is sent only when the handler calls ``msg.ack()``
(after its data is durable); a message never acked is redelivered by the broker after the next
connect. Returns never: raises :class:`~zhizao.errors.ConnectionLost` when the connection drops
(the supervisor reconnects), :class:`~zhizao.errors.SecurityError` for TLS or authorisation
failures. paho's network thread only hands messages over to the loop (in order, one wake-up of the
loop per burst of messages).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.connectors.mqtt.client import apply_auth_and_tls
from gateway.config import BrokerConfig
from zhizao.errors import ConnectionLost, SecurityError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Message:
    """One received message; call :meth:`ack` once it is committed (idempotent)."""

    topic: str
    payload: bytes
    retain: bool
    dup: bool
    _client: mqtt.Client
    _mid: int
    _qos: int
    _acked: bool = False

    def ack(self) -> None:
        if not self._acked and self._qos > 0:
            self._acked = True
            self._client.ack(self._mid, self._qos)


class BrokerSession:
    """See the module docstring."""

    def __init__(self, config: BrokerConfig, client_id: str, filters: list[str]) -> None:
        self.config = config
        self.client_id = client_id
        self.filters = filters

    def _client(self, loop: asyncio.AbstractEventLoop, lost: asyncio.Future[str],
                on_message: Callable[[Message], None], on_connected: Callable[[], None]) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False, manual_ack=True,
        )
        apply_auth_and_tls(client, cfg.username, cfg.password, cfg.tls)

        # paho's thread queues messages; the loop handles every queued one per wake-up, in order
        # (one cross-thread wake-up per burst, not per message).
        queued: deque[mqtt.MQTTMessage] = deque()
        scheduled = False

        def drain() -> None:
            nonlocal scheduled
            scheduled = False  # before draining: a message queued from now on schedules a new drain
            while queued:
                msg = queued.popleft()
                on_message(Message(msg.topic, bytes(msg.payload), bool(msg.retain), bool(msg.dup), client,
                                   msg.mid, msg.qos))

        def on_msg(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            nonlocal scheduled
            queued.append(msg)
            if not scheduled:
                scheduled = True
                loop.call_soon_threadsafe(drain)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(_resolve, lost, f"disconnected: {reason}")

        def on_connect(_c: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                loop.call_soon_threadsafe(_resolve, lost, f"connection refused: {reason}")
                return
            opts = SubscribeOptions(qos=1)
            client.subscribe([(f, opts) for f in self.filters])
            loop.call_soon_threadsafe(on_connected)
            log.info("MQTT connected to %s:%d as %s (session present: %s), subscribed to %s",
                     cfg.host, cfg.port, self.client_id, flags.session_present, ", ".join(self.filters))

        client.on_message = on_msg
        client.on_disconnect = on_disconnect
        client.on_connect = on_connect
        return client

    async def run(self, on_message: Callable[[Message], None],
                  on_connected: Callable[[], None] = lambda: None) -> None:
        """Receive until the connection drops (see the module docstring); ``on_connected`` is
        called (on the loop) after each successful CONNACK."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()
        client = self._client(loop, lost, on_message, on_connected)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            try:
                await asyncio.to_thread(client.connect, cfg.host, cfg.port, keepalive=cfg.keepalive_s,
                                        clean_start=False, properties=props)
            except ssl.SSLError as exc:
                raise SecurityError(f"MQTT TLS to {cfg.host}:{cfg.port} failed: {exc}") from exc
            except OSError as exc:
                raise ConnectionLost(f"MQTT broker {cfg.host}:{cfg.port} unreachable: {exc}") from exc
            client.loop_start()
            reason = await lost
            if "refused" in reason and "authori" in reason.lower():
                raise SecurityError(f"MQTT broker {cfg.host}:{cfg.port} {reason}")
            raise ConnectionLost(f"MQTT broker {cfg.host}:{cfg.port} {reason}")
        finally:
            client.on_disconnect = None
            client.on_message = None
            client.disconnect()
            client.loop_stop()


def _resolve(fut: asyncio.Future[str], reason: str) -> None:
    if not fut.done():
        fut.set_result(reason)
