"""MQTT connector (paho-mqtt): vendor payloads in, acknowledged to the broker only after commit.

One ``run`` = one connection: connect with a persistent session (fixed client id, clean start
off, QoS 1 by default), subscribe to the mappings' filters — those not covered by another
mapping's (``acme/+/+/telemetry`` is not subscribed next to ``acme/#``: a broker may deliver a
message once per matching subscription, as Mosquitto does with MQTT 5, so it would come, and be
stored, twice; the configuration refuses filters that overlap without one covering the other, and
the covered ones are unsubscribed, as an earlier version's persistent session may hold them) —
and for each message map it
(:mod:`edge_agent.mapping`) and submit the samples to the buffer; the PUBACK is sent (paho
``manual_ack``) only when the buffer has committed them. A broker that goes away raises
:class:`~zhizao.errors.ConnectionLost`; the supervisor calls ``run`` again and the broker
redelivers everything it has not seen acknowledged. A redelivery (DUP flag) of a message
already committed is recognised by its digest (packet identifier + topic + payload: the broker
resends with the original packet identifier, and two distinct messages with the same payload have
different ones) and only acknowledged (counted in ``duplicates_skipped``) — also after a crash
between commit and PUBACK: the digest of each
QoS ≥ 1 message is committed with its samples, in the same transaction, into a ring of
buffer marks that the next process reads before it connects (:mod:`~edge_agent.connectors.mqtt.dedup`,
shared with the site gateway). A digest counts as seen only while its commit is pending or done:
a redelivery that arrives while the original's commit is pending is acknowledged only if that
commit succeeds, and a commit that fails forgets the digest, so the broker's next redelivery is
stored.

One limit, once, at the upgrade from a version that subscribed to every mapping's filter: with
MQTT 5 and a persistent session, a message published while the agent was stopped for the upgrade
whose topic matches both a covered filter and its cover was queued by the broker once per matching
subscription (Mosquitto does so) and is delivered right after the CONNACK, before the UNSUBSCRIBE
takes effect; the copies have distinct packet identifiers (the redelivery digests cannot tell them
apart, and nothing else can: identical payloads may be distinct messages), so such a message is
stored twice. Messages published after the new version has connected are stored once; MQTT 3.1.1
with Mosquitto is not affected (one copy per client).

A commit that fails (disk full, I/O error) is logged (one ERROR line when commits start failing,
one WARNING when they succeed again), counted (``commit_failures``) and **ends the session** it
came on (:class:`~zhizao.errors.ConnectionLost` naming the failure): nothing of it was
acknowledged, and a broker resends unacknowledged messages only on a new connection of the
persistent session — staying connected would fill the broker's in-flight window and stall the
session silently. The supervisor reconnects with backoff and the broker redelivers them (DUP,
digests forgotten: stored). Samples of QoS 0 messages in a failed commit cannot come back: they
are counted in ``dropped["commit_failed"]``, as are all of them when the session is not
persistent (``clean_start = true``, or MQTT 5 with ``session_expiry_s = 0``).

A message that does not map, or one of whose signals does not, is counted per mapping
(``bad_by_mapping``), logged with the reason (at most one line per mapping and kind of reason per
minute, plus the count of those not logged; "not mapped" when nothing of it was stored, else how
many of its signals were and were not) and written to the dead-letter file with its topic,
payload and mapping; it is then acknowledged, so it does not block the session.

paho's I/O runs on the event loop (:class:`~edge_agent.connectors.mqtt.aio.PahoOnLoop`, no network
thread), and the common PUBLISH (QoS 0/1, no MQTT 5 properties) reaches the connector as plain
fields, without paho's message and properties objects
(:class:`~edge_agent.connectors.mqtt.inbound.LeanClient`; the others come through ``on_message``,
to the same handling): the messages read in one wake-up of the socket's reader form a burst; each is mapped as
it is read, and at the end of the wake-up the burst's samples and marks go to the buffer in one
``submit``. When that commit succeeds the burst's PUBACKs are queued in arrival order and go out
together; when it fails none is sent and the burst's digests are forgotten. At ``_MAX_HELD``
messages read whose commit has not ended the connector stops reading the socket until commits
settle (the digest ring must cover every committed message the broker may redeliver).
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.buffer import PutResult
from edge_agent.connectors.base import ConnectorStats, Sink
from edge_agent.connectors.mqtt.aio import PahoOnLoop
from edge_agent.connectors.mqtt.client import apply_auth_and_tls
from edge_agent.connectors.mqtt.config import MqttConnectorConfig
from edge_agent.connectors.mqtt.dedup import MAX_HELD, CommittedDigests, digest_of, digest_of_raw
from edge_agent.connectors.mqtt.inbound import LeanClient
from edge_agent.deadletter import DeadLetter
from edge_agent.mapping import MappingError, PayloadMapper
from zhizao.model import Sample

log = logging.getLogger(__name__)
_MAX_HELD = MAX_HELD
"""Messages read whose commit has not ended at most: at this many the connector stops reading
until commits settle below half of it (see :data:`~edge_agent.connectors.mqtt.dedup.MAX_HELD`)."""


class _Burst:
    """Messages read in one wake-up of the reader: submitted to the buffer together, acknowledged
    together once committed."""

    __slots__ = (
        "acks", "client", "digests", "held", "marks", "samples", "session", "unredeliverable", "waiters",
    )

    def __init__(self, client: mqtt.Client, session: PahoOnLoop | None) -> None:
        self.client = client
        self.session = session
        """The connection it was read on (ended when its commit fails)."""
        self.unredeliverable = 0
        """Its samples of QoS 0 messages: lost if its commit fails (the broker cannot resend them)."""
        self.samples: list[Sample] = []
        self.marks: dict[str, str] = {}
        self.acks: list[tuple[int, int]] = []
        """(mid, qos) of its QoS >= 1 messages, in arrival order."""
        self.digests: list[bytes] = []
        self.waiters: list[tuple[mqtt.Client, PahoOnLoop | None, int, int]] = []
        """Redeliveries (DUP) of its messages that arrived before its commit ended (client,
        connection, mid, qos): acknowledged only if it succeeds; if it fails, their connection
        (a later one than the burst's) is ended too, so that the broker redelivers them again."""
        self.held = 0
        """Messages settled with it: its own and its waiters (see ``_MAX_HELD``)."""


class MqttConnector:
    """See the module docstring."""

    def __init__(self, config: MqttConnectorConfig, agent_id: str, deadletter: DeadLetter) -> None:
        self.config = config
        self.name = config.name
        self.client_id = config.client_id or f"{agent_id}-{config.name}"
        self.deadletter = deadletter
        self.mapper = PayloadMapper(config.mappings)
        self.stats = ConnectorStats()
        self._ring: CommittedDigests[_Burst] = CommittedDigests(config.name)
        """Digests of the messages whose burst is being committed, or was committed."""
        self._burst: _Burst | None = None
        self._held = 0
        """Messages read whose burst has not settled (see ``_MAX_HELD``)."""
        self._session: PahoOnLoop | None = None
        self._last_warn: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        """Per (mapping, kind of reason): the last bad-payload log line, the ones not logged since."""
        for m in config.mappings:
            self.stats.bad_by_mapping[m.name] = 0
        self._runs = 0
        self._loaded = False
        self._failing = 0
        """Commits failed since the last one that succeeded (logged once per change)."""
        self._redeliverable = not config.clean_start and (
            config.protocol != "5" or config.session_expiry_s > 0
        )
        """The broker keeps the session (and what was not acknowledged) across a reconnect."""

    def _client(self) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = LeanClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else cfg.clean_start,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        apply_auth_and_tls(client, cfg.username, cfg.password, cfg.tls)
        client.on_publish_fields = partial(self._on_publish, client)  # the common PUBLISH
        client.on_message = self._on_message  # the others (MQTT 5 properties, …): paho's message
        return client

    async def settle_at_stop(self, sink: Sink) -> int:
        """Nothing to settle: a message whose commit did not succeed was never acknowledged, so the
        broker keeps it for the persistent session; the samples of those it cannot redeliver were
        counted under ``commit_failed`` when their commit failed. Returns 0."""
        return 0

    async def run(self, sink: Sink) -> None:
        """Read until cancelled; ``ConnectionLost`` when the broker goes away."""
        cfg = self.config
        self._sink = sink
        if not self._loaded:  # before connecting: redeliveries may be the first messages
            await self._ring.load(sink)
            self._loaded = True
        client = self._client()

        def accepted(_flags: Any) -> None:  # the CONNACK: the broker took the login and the session
            self._runs += 1
            if self._runs > 1:
                self.stats.reconnects += 1
            self.stats.connected = True
            log.info("MQTT %s connected to %s:%d as %s, subscribed to %s", self.name, cfg.host, cfg.port,
                     self.client_id, ", ".join(self.mapper.filters))

        session = self._session = PahoOnLoop(client, on_connected=accepted, after_read=self._flush)
        props = None
        if cfg.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
        try:
            await session.connect(
                cfg.host,
                cfg.port,
                keepalive=cfg.keepalive_s,
                clean_start=cfg.clean_start if cfg.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
            if self.mapper.covered_filters:  # an earlier version's subscriptions, in the session
                client.unsubscribe(self.mapper.covered_filters)
            for flt in self.mapper.filters:  # queued: sent once the CONNACK came
                client.subscribe(flt, qos=cfg.qos)
            await session.wait_closed()
        finally:
            self.stats.connected = False
            if self._burst is not None:  # read, never submitted (the I/O failed): not acknowledged
                burst, self._burst = self._burst, None
                self._drop(burst, "connection_lost")
                self._forget(burst, committed=False)
            self._session = None
            session.close()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """paho's ``on_message`` (a PUBLISH :class:`LeanClient` leaves to paho), on the loop."""
        topic, payload = msg.topic, bytes(msg.payload)
        self._add(client, topic, payload, digest_of(topic, payload, msg.mid), msg.dup, msg.qos, msg.mid)

    def _on_publish(  # noqa: PLR0917 - LeanClient's handler
        self, client: mqtt.Client, topic: str, raw_topic: bytes, payload: bytes, dup: bool, qos: int, mid: int
    ) -> None:
        """:class:`LeanClient`'s handler of the common PUBLISH, on the loop (inside ``loop_read``)."""
        self._add(client, topic, payload, digest_of_raw(raw_topic, payload, mid), dup, qos, mid)

    def _add(  # noqa: PLR0917 - the fields of one message
        self, client: mqtt.Client, topic: str, payload: bytes, digest: bytes, dup: bool, qos: int, mid: int
    ) -> None:
        """Adds one message to the burst (``digest``: :func:`digest_of` of topic, payload and mid)."""
        self.stats.messages += 1
        burst = self._burst
        if burst is None:
            burst = self._burst = _Burst(client, self._session)
        self._held += 1
        ring = self._ring
        if ring.redelivered(digest, dup, qos):
            self.stats.duplicates_skipped += 1
            pending = ring.pending(digest)
            if pending is None:  # committed: acknowledged with this burst (after what came before)
                burst.held += 1
                if qos > 0:
                    burst.acks.append((mid, qos))
            else:  # the original is still being committed: acknowledged only if it is
                pending.held += 1
                if qos > 0:
                    pending.waiters.append((client, self._session, mid, qos))
            return
        burst.held += 1
        if qos > 0:
            burst.acks.append((mid, qos))
        try:
            result = self.mapper.map(topic, payload)
        except MappingError as exc:
            self._bad(topic, payload, exc.reason, exc.mapping, exc.kind, stored=None)
            return
        samples = result.samples
        if result.problems:
            self._bad(topic, payload, "; ".join(result.problems), result.mapping, "signals",
                      stored=len(samples))
        self.stats.got(len(samples))
        if qos > 0 and samples:  # only what the broker can redeliver
            key, value = ring.mark(digest)
            burst.marks[key] = value
        elif qos == 0:
            burst.unredeliverable += len(samples)
        burst.samples += samples
        burst.digests.append(digest)
        ring.remember(digest, burst)

    def _flush(self) -> None:
        """After each wake-up of the reader: the burst to the buffer; its PUBACKs once committed."""
        burst = self._burst
        if burst is None:
            return
        self._burst = None
        try:
            fut = self._sink.submit(burst.samples, burst.marks or None)
        except BaseException:
            self._drop(burst, "commit_failed")
            self._forget(burst, committed=False)
            raise
        fut.add_done_callback(lambda f: self._settled(burst, f))
        if self._held >= _MAX_HELD and self._session is not None:
            self._session.pause_reading()

    def _settled(self, burst: _Burst, fut: asyncio.Future[PutResult]) -> None:
        failure = RuntimeError("buffer commit cancelled") if fut.cancelled() else fut.exception()
        if failure is None:
            ack = burst.client.ack
            for mid, qos in burst.acks:
                ack(mid, qos)
            for client, _session, mid, qos in burst.waiters:
                client.ack(mid, qos)
            if self._failing:
                log.warning("MQTT %s: buffer commits succeed again (after %d failed)", self.name,
                            self._failing)
                self._failing = 0
        else:  # no PUBACK, and the session ends: the broker redelivers after the reconnect
            self._failed(burst, failure)
        self._forget(burst, committed=failure is None)

    def _failed(self, burst: _Burst, failure: BaseException) -> None:
        """A burst's commit failed: counted, logged once per change, its session ended (see the
        module docstring)."""
        self.stats.commit_failures += 1
        lost = self._drop(burst, "commit_failed")
        if not self._failing:
            log.error(
                "MQTT %s: buffer commit failed (%s): %d messages not acknowledged; ending the session so "
                "that the broker redelivers them after the reconnect%s",
                self.name, failure, len(burst.acks) + len(burst.waiters),
                f" ({lost} samples that cannot be redelivered dropped: commit_failed)" if lost else "",
            )
        self._failing += 1
        # the burst's connection, and the later one(s) its waiters' redeliveries came on: a broker
        # resends only on a new connection
        sessions = {id(x): x for x in [burst.session, *(w[1] for w in burst.waiters)] if x is not None}
        for session in sessions.values():
            session.end(f"session ended: buffer commit failed ({failure}); the broker redelivers "
                        "what was not acknowledged", failure)

    def _drop(self, burst: _Burst, reason: str) -> int:
        """Count the burst's samples the broker cannot redeliver as dropped for ``reason``."""
        lost = len(burst.samples) if not self._redeliverable else burst.unredeliverable
        if lost:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + lost
        return lost

    def _forget(self, burst: _Burst, *, committed: bool) -> None:
        """Settle the burst's digests: committed (None), or forgotten so that the broker's
        redelivery is stored. A digest evicted, or taken by a later message, is left alone. Its
        messages are no longer held: reading resumes below half of ``_MAX_HELD``."""
        self._held -= burst.held
        if self._held < _MAX_HELD // 2 and self._session is not None:
            self._session.resume_reading()
        self._ring.settle(burst.digests, burst, committed=committed)

    def _bad(  # noqa: PLR0917 - what the log line and the dead letter say
        self, topic: str, payload: bytes, reason: str, mapping: str | None, kind: str, stored: int | None
    ) -> None:
        """Count, dead-letter and (rate-limited per mapping and ``kind`` of reason) log a message
        that did not map (``stored`` None) or of which ``stored`` signals were kept."""
        stats = self.stats
        stats.bad_payloads += 1
        label = mapping or ""
        stats.bad_by_mapping[label] = stats.bad_by_mapping.get(label, 0) + 1
        self.deadletter.write("mqtt_payload", reason, connector=self.name, mapping=mapping, topic=topic,
                              payload=payload)
        key = (label, kind)
        now = time.monotonic()
        last = self._last_warn.get(key)
        if last is not None and now - last < 60.0:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        extra = self._suppressed.pop(key, 0)
        more = f" (+{extra} more like it since the last report)" if extra else ""
        if stored is None:
            what = "not mapped" + (f" (mapping {mapping})" if mapping else "")
        else:
            what = f"partly mapped (mapping {mapping}: {stored} signals stored, these not)"
        log.warning("MQTT %s: payload on %s %s: %s%s; kept in %s", self.name, topic, what, reason, more,
                    self.deadletter.path)
        if len(self._last_warn) >= 10_000:  # kinds are few; topics never enter the key
            self._last_warn.clear()
        self._last_warn[key] = now
