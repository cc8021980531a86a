"""One MQTT v5 connection to the plant broker with a persistent session and manual PUBACKs.

``await BrokerSession(...).run(on_message)`` connects (fixed client id, clean start off,
session expiry), unsubscribes the ``unsubscribe`` filters (subscriptions an earlier version left in
the persistent session), subscribes to every filter at QoS 1 and calls ``on_message(msg)`` on the event
loop for each message. The broker's PUBACK is sent only when the handler calls ``msg.ack()``
(after its data is durable); a message never acked is redelivered by the broker after the next
connect. Returns never: raises :class:`~zhizao.errors.ConnectionLost` when the connection drops
(the supervisor reconnects), :class:`~zhizao.errors.SecurityError` for TLS or authorisation
failures. paho's I/O runs on the event loop (:class:`~edge_agent.connectors.mqtt.aio.PahoOnLoop`,
no network thread): ``on_message`` is called as each message is read, in order, and the PUBACKs
acked in one pass of the loop go out together. An exception raised by ``on_message`` ends the
connection (``ConnectionLost``, the exception logged with its traceback): the broker redelivers.
A handler that cannot commit a message calls ``msg.end_session(reason)``: the connection it came
on ends (``ConnectionLost`` with that reason) so that the broker redelivers it after the
reconnect — a broker resends unacknowledged messages only on a new connection.
:meth:`BrokerSession.pause_reading` / :meth:`BrokerSession.resume_reading` stop and restart reading
the current connection (flow control; a new connection starts reading).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.connectors.mqtt.aio import PahoOnLoop
from edge_agent.connectors.mqtt.client import apply_auth_and_tls
from gateway.config import BrokerConfig

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
    _end: Callable[[str, BaseException | None], None] | None = None

    @property
    def qos(self) -> int:
        return self._qos

    @property
    def mid(self) -> int:
        """The packet identifier (0 at QoS 0): a redelivery (DUP) has its original's."""
        return self._mid

    def end_session(self, reason: str, cause: BaseException | None = None) -> None:
        """End the connection this message came on (see the module docstring); idempotent."""
        if self._end is not None:
            self._end(reason, cause)

    def ack(self) -> None:
        if not self._acked and self._qos > 0:
            self._acked = True
            self._client.ack(self._mid, self._qos)


class BrokerSession:
    """See the module docstring."""

    def __init__(self, config: BrokerConfig, client_id: str, filters: list[str],
                 unsubscribe: list[str] | None = None) -> None:
        self.config = config
        self.client_id = client_id
        self.filters = filters
        self.unsubscribe = unsubscribe or []
        """Filters not to receive on, unsubscribed at each connect before subscribing: the broker
        keeps a persistent session's subscriptions, also those an earlier version made."""
        self._conn: PahoOnLoop | None = None

    def pause_reading(self) -> None:
        """Stop reading the current connection until :meth:`resume_reading` (no-op without one)."""
        if self._conn is not None:
            self._conn.pause_reading()

    def resume_reading(self) -> None:
        if self._conn is not None:
            self._conn.resume_reading()

    def _client(self, on_message: Callable[[Message], None]) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=False, manual_ack=True,
        )
        apply_auth_and_tls(client, cfg.username, cfg.password, cfg.tls)

        def on_msg(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            conn = self._conn  # the connection reading it (on_message runs inside its loop_read)
            on_message(Message(msg.topic, bytes(msg.payload), bool(msg.retain), bool(msg.dup), client,
                               msg.mid, msg.qos, _end=conn.end if conn is not None else None))

        client.on_message = on_msg
        return client

    async def run(self, on_message: Callable[[Message], None],
                  on_connected: Callable[[], None] = lambda: None) -> None:
        """Receive until the connection drops (see the module docstring); ``on_connected`` is
        called (on the loop) after each successful CONNACK."""
        cfg = self.config
        client = self._client(on_message)

        def connected(flags: Any) -> None:
            opts = SubscribeOptions(qos=1)
            if self.unsubscribe:
                client.unsubscribe(self.unsubscribe)
            client.subscribe([(f, opts) for f in self.filters])
            on_connected()
            log.info("MQTT connected to %s:%d as %s (session present: %s), subscribed to %s",
                     cfg.host, cfg.port, self.client_id, flags.session_present, ", ".join(self.filters))

        session = self._conn = PahoOnLoop(client, on_connected=connected)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            await session.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False,
                                  properties=props)
            await session.wait_closed()
        finally:
            client.on_message = None
            self._conn = None
            session.close()
