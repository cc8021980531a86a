"""MQTT connector (paho-mqtt): vendor payloads in, acknowledged to the broker only after commit.

One ``run`` = one connection: connect with a persistent session (fixed client id, clean start
off, QoS 1 by default), subscribe to every mapping's filter, and for each message map it
(:mod:`edge_agent.mapping`) and submit the samples to the buffer; the PUBACK is sent (paho
``manual_ack``) only when the buffer has committed them. A broker that goes away raises
:class:`~zhizao.errors.ConnectionLost`; the supervisor calls ``run`` again and the broker
redelivers everything it has not seen acknowledged. A redelivery (DUP flag) of a message
already committed is recognised by its digest (topic + payload) and only acknowledged (counted
in ``duplicates_skipped``) — also after a crash between commit and PUBACK: the digest of each
QoS ≥ 1 message is committed with its samples, in the same transaction, into a ring of
``_DUP_SLOTS`` buffer marks that the next process reads before it connects. A digest counts as
seen only while its commit is pending or done: a redelivery that arrives while the original's
commit is pending is acknowledged only if that commit succeeds, and a commit that fails forgets
the digest, so the broker's next redelivery is stored.

A message that does not map is counted, logged with the reason (at most one line per mapping
per minute plus a count) and written to the dead-letter file with its topic and payload; it
is then acknowledged, so it does not block the session. Paho's network thread only hands
messages to the event loop; all work happens on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections import OrderedDict
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.connectors.base import ConnectorStats, Sink
from edge_agent.connectors.mqtt.client import apply_auth_and_tls
from edge_agent.connectors.mqtt.config import MqttConnectorConfig
from edge_agent.deadletter import DeadLetter
from edge_agent.mapping import MappingError, PayloadMapper
from zhizao.errors import ConnectionLost, SecurityError

log = logging.getLogger(__name__)
_SEEN_MAX = 20_000
_DUP_SLOTS = 4096
"""Digests of committed messages kept in the buffer: far more than a broker has in flight
unacknowledged to one client (Mosquitto's default is 20)."""


class MqttConnector:
    """See the module docstring."""

    def __init__(self, config: MqttConnectorConfig, agent_id: str, deadletter: DeadLetter) -> None:
        self.config = config
        self.name = config.name
        self.client_id = config.client_id or f"{agent_id}-{config.name}"
        self.deadletter = deadletter
        self.mapper = PayloadMapper(config.mappings)
        self.stats = ConnectorStats()
        self._seen: OrderedDict[bytes, asyncio.Future[Any] | None] = OrderedDict()
        """Digest -> the pending commit of its samples, or None once committed."""
        self._last_warn: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._runs = 0
        self._mark_prefix = f"mqtt:{self.name}:dup:"
        self._seq = 0
        self._loaded = False

    def _client(self, loop: asyncio.AbstractEventLoop, lost: asyncio.Future[str]) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else cfg.clean_start,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        apply_auth_and_tls(client, cfg.username, cfg.password, cfg.tls)

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            loop.call_soon_threadsafe(self._handle, msg, client)

        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(_resolve, lost, f"disconnected: {reason}")

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                loop.call_soon_threadsafe(_resolve, lost, f"connection refused: {reason}")

        client.on_message = on_message
        client.on_disconnect = on_disconnect
        client.on_connect = on_connect
        return client

    async def run(self, sink: Sink) -> None:
        """Read until cancelled; ``ConnectionLost`` when the broker goes away."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()
        client = self._client(loop, lost)
        self._sink = sink
        if not self._loaded:  # before connecting: redeliveries may be the first messages
            await self._load_committed(sink)
            self._loaded = True
        props = None
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
        try:
            try:
                await asyncio.to_thread(
                    client.connect,
                    cfg.host,
                    cfg.port,
                    keepalive=cfg.keepalive_s,
                    clean_start=cfg.clean_start if cfg.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=props,
                )
            except ssl.SSLError as exc:
                raise SecurityError(f"MQTT TLS to {cfg.host}:{cfg.port} failed: {exc}") from exc
            except OSError as exc:
                raise ConnectionLost(f"MQTT broker {cfg.host}:{cfg.port} unreachable: {exc}") from exc
            client.loop_start()
            for flt in self.mapper.filters:
                client.subscribe(flt, qos=cfg.qos)
            self._runs += 1
            if self._runs > 1:
                self.stats.reconnects += 1
            self.stats.connected = True
            log.info(
                "MQTT %s connected to %s:%d as %s, subscribed to %s",
                self.name,
                cfg.host,
                cfg.port,
                self.client_id,
                ", ".join(self.mapper.filters),
            )
            reason = await lost
            if "refused" in reason and "authori" in reason.lower():
                raise SecurityError(f"MQTT broker {cfg.host}:{cfg.port} {reason}")
            raise ConnectionLost(f"MQTT broker {cfg.host}:{cfg.port} {reason}")
        finally:
            self.stats.connected = False
            client.on_disconnect = None
            client.disconnect()
            client.loop_stop()

    async def _load_committed(self, sink: Sink) -> None:
        """Fill ``_seen`` with the digests an earlier process committed (oldest first)."""
        entries: list[tuple[int, bytes]] = []
        for value in (await sink.marks(self._mark_prefix)).values():
            seq, _, hexdigest = value.partition(":")
            try:
                entries.append((int(seq), bytes.fromhex(hexdigest)))
            except ValueError:
                log.warning("MQTT %s: ignoring an unreadable committed-message mark %r", self.name, value)
        for _, digest in sorted(entries):
            self._seen[digest] = None
        self._seq = max((seq for seq, _ in entries), default=-1) + 1

    def _handle(self, msg: mqtt.MQTTMessage, client: mqtt.Client) -> None:
        self.stats.messages += 1
        digest = hashlib.blake2b(msg.topic.encode() + b"\0" + msg.payload, digest_size=16).digest()
        if msg.dup and digest in self._seen:
            self.stats.duplicates_skipped += 1
            pending = self._seen[digest]
            if pending is None:
                self._ack_after_commit(client, msg, [])
            else:  # the original is still being committed: acknowledge only if that succeeds
                self._ack_when(pending, client, msg)
            return
        try:
            result = self.mapper.map(msg.topic, bytes(msg.payload))
        except MappingError as exc:
            self._bad(msg, exc.reason, "unmapped")
            self._ack_after_commit(client, msg, [])
            return
        if result.problems:
            self._bad(msg, "; ".join(result.problems), result.mapping)
        self.stats.got(len(result.samples))
        marks = None
        if msg.qos > 0 and result.samples:  # only what the broker can redeliver
            marks = {f"{self._mark_prefix}{self._seq % _DUP_SLOTS:04d}": f"{self._seq}:{digest.hex()}"}
            self._seq += 1
        fut = self._ack_after_commit(client, msg, result.samples, marks)
        self._seen[digest] = fut
        self._seen.move_to_end(digest)
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)

        def settled(f: asyncio.Future[Any]) -> None:
            if self._seen.get(digest) is not f:
                return  # evicted, or a later message with the same content took the slot
            if f.cancelled() or f.exception() is not None:
                del self._seen[digest]  # not committed: the broker's redelivery must be stored
            else:
                self._seen[digest] = None

        fut.add_done_callback(settled)

    def _ack_after_commit(
        self,
        client: mqtt.Client,
        msg: mqtt.MQTTMessage,
        samples: list[Any],
        marks: dict[str, str] | None = None,
    ) -> asyncio.Future[Any]:
        fut = self._sink.submit(samples, marks)
        self._ack_when(fut, client, msg)
        return fut

    def _ack_when(self, fut: asyncio.Future[Any], client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        """PUBACK ``msg`` once ``fut`` (a buffer commit) has succeeded; never if it failed."""
        mid, qos = msg.mid, msg.qos

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None:
                return  # not committed: no PUBACK, the broker redelivers
            if qos > 0:
                client.ack(mid, qos)

        fut.add_done_callback(done)

    def _bad(self, msg: mqtt.MQTTMessage, reason: str, key: str) -> None:
        self.stats.bad_payloads += 1
        self.deadletter.write(
            "mqtt_payload", reason, connector=self.name, topic=msg.topic, payload=bytes(msg.payload)
        )
        now = time.monotonic()
        if now - self._last_warn.get(key, 0.0) >= 60.0:
            extra = self._suppressed.pop(key, 0)
            more = f" (+{extra} more since the last report)" if extra else ""
            log.warning(
                "MQTT %s: payload on %s not mapped: %s%s; kept in %s",
                self.name,
                msg.topic,
                reason,
                more,
                self.deadletter.path,
            )
            self._last_warn[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


def _resolve(fut: asyncio.Future[str], reason: str) -> None:
    if not fut.done():
        fut.set_result(reason)
