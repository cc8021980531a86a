"""MQTT connector (paho-mqtt): vendor payloads in, acknowledged to the broker only after commit.

One ``run`` = one connection: connect with a persistent session (fixed client id, clean start
off, QoS 1 by default), subscribe to every mapping's filter, and for each message map it
(:mod:`edge_agent.mapping`) and submit the samples to the buffer; the PUBACK is sent (paho
``manual_ack``) only when the buffer has committed them. A broker that goes away raises
:class:`~zhizao.errors.ConnectionLost`; the supervisor calls ``run`` again and the broker
redelivers everything it has not seen acknowledged. A redelivery (DUP flag) of a message
already committed in this process is recognised by its digest and only acknowledged.

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


class MqttConnector:
    """See the module docstring."""

    def __init__(self, config: MqttConnectorConfig, agent_id: str, deadletter: DeadLetter) -> None:
        self.config = config
        self.name = config.name
        self.client_id = config.client_id or f"{agent_id}-{config.name}"
        self.deadletter = deadletter
        self.mapper = PayloadMapper(config.mappings)
        self.stats = ConnectorStats()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._last_warn: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._runs = 0

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

    def _handle(self, msg: mqtt.MQTTMessage, client: mqtt.Client) -> None:
        self.stats.messages += 1
        digest = hashlib.blake2b(msg.topic.encode() + b"\0" + msg.payload, digest_size=16).digest()
        if msg.dup and digest in self._seen:
            self._ack_after_commit(client, msg, [])
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
        self._seen[digest] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)
        self._ack_after_commit(client, msg, result.samples)

    def _ack_after_commit(self, client: mqtt.Client, msg: mqtt.MQTTMessage, samples: list[Any]) -> None:
        fut = self._sink.submit(samples)
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
