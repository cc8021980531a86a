"""The southbound side: messages from the plant broker into the durable buffer, one record each.

:class:`UnsIntake` is a connector in the edge agent's sense (``name``, ``stats``,
``run(sink)``), so the agent's :func:`~edge_agent.supervisor.supervise` keeps it connected. Per
message (on the event loop, in arrival order):

- ``zhizao/v1/<site>/<area>/<line>/<machine>`` — a wire-format batch (version 1 or 2) from an
  agent's MQTT uplink (:mod:`zhizao.wire`, optionally gzip), checked strictly by
  :class:`~gateway.wirecheck.BatchChecker` and stored as ONE buffer record: the agent's document
  as it came (decompressed, in its version) under the agent's ``(producer, batch_id, seq)`` —
  nothing decoded into samples, nothing re-encoded. An invalid envelope is dead-lettered whole
  (``gateway_batch``). **The topic is authoritative**: it names the machine (the broker's ACLs
  say who may publish where), so a batch holding a sample of any other asset is dead-lettered
  whole (``gateway_batch``, "asset … not of topic …", counted in ``counts.wrong_asset``) — nothing
  of it stored. A batch with invalid samples (the rare, slow case) has them dead-lettered
  one by one (``gateway_sample``, with its index, the sample — a version-2 one with its series'
  fields — and, for version 2, its ``place`` such as ``series[1].ts[2]``) and its valid samples
  stored re-encoded in the document's version, in their order, under the same identity.
- ``zhizao/v1/agents/<id>/status`` — birth / last will (:mod:`gateway.fleet`): fleet state
  updated, fleet samples stored as a record under a deterministic id. Empty payloads (a cleared
  retained message) are only acknowledged.
- ``zhizao/v1/alerts/...`` — events, not data: a site's alerts (``alerts/<site>/<source>/<rule>``)
  match the data filter, and are only acknowledged (``counts.alerts_skipped``), never stored nor
  dead-lettered. ``alerts`` and ``agents`` are namespaces, not sites (:data:`zhizao.topics.RESERVED_SITES`):
  a wire-format batch published there (a site so named), or any other topic under
  ``zhizao/v1/agents/``, is dead-lettered (``gateway_batch``) saying so.
- anything else — a raw vendor topic, mapped with the agent's :class:`~edge_agent.mapping.PayloadMapper`
  and stored under the gateway's own id (``<gateway id>``, ``<boot nonce>-<n>``). Unmappable
  payloads are dead-lettered (``mqtt_payload``). Vendor payloads carry no identity, and a new
  process has a new nonce: so a raw message's redelivery (DUP flag) after its record was committed
  is recognised by its digest (packet identifier + topic + payload: a redelivery keeps its
  original's packet identifier, two messages with the same payload have different ones) and only
  acknowledged (counted in
  ``duplicates_skipped``) — also after a crash between commit and PUBACK: the digest of each QoS ≥ 1
  raw message is committed with its record, in the same transaction (``submit_records(records,
  marks)``), into the ring of buffer marks ``mqtt:broker:dup:*`` that the next process reads before
  it connects. The edge agent's MQTT connector does the same with the same code
  (:mod:`edge_agent.connectors.mqtt.dedup`, whose docstring states the contract): a digest counts
  as seen only while its commit is pending or done; a redelivery arriving while the original's
  commit is pending is acknowledged only if that commit succeeds; a failed commit forgets the
  digest, so the broker's next redelivery is stored; a payload published twice (no DUP flag) is
  stored twice. At ``_MAX_HELD`` raw messages whose commit has not ended the intake stops reading
  until commits settle below half of it (the ring must cover every committed message the broker
  may redeliver; Mosquitto does not always keep to the Receive Maximum). Agent batches and status
  messages need no ring: their records' identities are functions of the payload.

Every message is acknowledged to the broker only once its record is committed to the buffer
(``sink.submit_records`` resolved; records of many messages share one group commit); a message
whose record could not be committed is not acknowledged (``counts.uncommitted``), and the
connection it came on is ended (one ERROR line when commits start failing, one WARNING when they
succeed again): a broker resends unacknowledged messages only on a new connection, so staying
connected would fill its in-flight window and stall the intake silently; the supervisor
reconnects and the broker redelivers them.
Dead-lettered messages are acknowledged after the dead-letter line is written (they would fail
the same way again).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import orjson

from edge_agent.buffer import EncodedBatch, PutResult
from edge_agent.connectors.base import ConnectorStats, Sink
from edge_agent.connectors.mqtt.dedup import MAX_HELD, CommittedDigests, digest_of
from edge_agent.deadletter import DeadLetter
from edge_agent.mapping import MappingError, PayloadMapper
from gateway import fleet
from gateway.config import GatewayConfig
from gateway.mqtt import BrokerSession, Message
from gateway.wirecheck import BatchChecker
from zhizao import topics, wire
from zhizao.errors import WireFormatError
from zhizao.model import Batch

log = logging.getLogger(__name__)
_STATUS_PREFIX = topics.ROOT + "/agents/"
_MAX_HELD = MAX_HELD
"""Raw messages read whose commit has not ended at most: at this many the intake stops reading
until commits settle below half of it (see :data:`~edge_agent.connectors.mqtt.dedup.MAX_HELD`)."""


@runtime_checkable
class RecordSink(Protocol):
    """Where the intake commits records, and marks with them (the agent's
    :class:`~edge_agent.buffer.SqliteBuffer`)."""

    def submit_records(
        self, records: Sequence[EncodedBatch], marks: dict[str, str] | None = None
    ) -> asyncio.Future[PutResult]: ...

    async def marks(self, prefix: str) -> dict[str, str]: ...


@dataclass(slots=True)
class IntakeCounts:
    """Messages by kind, and records the buffer failed to commit (left un-acknowledged)."""

    agent_batches: int = 0
    status_messages: int = 0
    raw_messages: int = 0
    uncommitted: int = 0
    alerts_skipped: int = 0
    """Messages on ``zhizao/v1/alerts/...`` (a site's alerts match the data filter): acknowledged only."""
    wrong_asset: int = 0
    """Agent batches dead-lettered for a sample whose asset is not the topic's."""


class UnsIntake:
    """See the module docstring."""

    name = "broker"

    def __init__(self, config: GatewayConfig, deadletter: DeadLetter, fleet_state: fleet.FleetState) -> None:
        self.config = config
        self.deadletter = deadletter
        self.fleet = fleet_state
        self.stats = ConnectorStats()
        self.counts = IntakeCounts()
        self.mapper = PayloadMapper(config.broker.mappings) if config.broker.mappings else None
        self.nonce = secrets.token_hex(4)
        self._counter = 0
        self._runs = 0
        self._sink: RecordSink | None = None
        self._ring: CommittedDigests[asyncio.Future[PutResult]] = CommittedDigests(self.name)
        """Digests of the raw messages whose record is being committed (by that future), or was."""
        self._loaded = False
        self._held = 0
        """Raw messages read whose commit has not ended (see ``_MAX_HELD``)."""
        self._failing = 0
        """Commits failed since the last one that succeeded (logged once per change)."""
        self.checker = BatchChecker()
        b = config.broker
        shared = f"$share/{b.share_group}/" if b.share_group else ""
        # the mappings' filters not covered by another's (a broker delivers a message once per
        # matching subscription: stored twice); the covered ones are unsubscribed, as an earlier
        # version, which subscribed every mapping's filter, may have left them in the session
        self.filters = ([shared + topics.DATA_FILTER] if b.subscribe_data else []) + (
            [topics.STATUS_FILTER] if b.subscribe_status else []) + (
            [shared + f for f in self.mapper.filters] if self.mapper is not None else [])
        covered = [shared + f for f in self.mapper.covered_filters] if self.mapper is not None else []
        self.session = BrokerSession(b, b.client_id or config.id, self.filters, unsubscribe=covered)

    async def settle_at_stop(self, sink: Sink | RecordSink) -> int:
        """Nothing to settle (the connector contract): a message whose commit did not succeed was
        never acknowledged, so the broker redelivers it to the next session. Returns 0."""
        return 0

    async def run(self, sink: Sink | RecordSink) -> None:
        """One connection (see :class:`gateway.mqtt.BrokerSession`); ``ConnectionLost`` when it drops."""
        record_sink = self.bind(sink)
        if not self._loaded:  # before connecting: redeliveries may be the first messages
            await self._ring.load(record_sink)
            self._loaded = True
        try:
            await self.session.run(self.handle, self._connected)
        finally:
            self.stats.connected = False

    def _connected(self) -> None:
        self._runs += 1
        if self._runs > 1:
            self.stats.reconnects += 1
        self.stats.connected = True

    def bind(self, sink: Sink | RecordSink) -> RecordSink:
        """Where :meth:`handle` commits records (``run`` binds the sink it is given, which must
        take records: the agent's buffer does); returns it."""
        if not isinstance(sink, RecordSink):
            raise TypeError(f"the gateway's intake needs a buffer taking records, got {type(sink).__name__}")
        self._sink = sink
        return sink

    def handle(self, msg: Message) -> None:
        """Route one message (see the module docstring); called on the event loop."""
        self.stats.messages += 1
        topic = msg.topic
        if topic.startswith(_STATUS_PREFIX):
            agent_id = topics.agent_of_status_topic(topic)
            if agent_id is not None:
                self._status(msg, agent_id)
            else:
                self._reserved(msg, "agents")
            return
        if topics.is_alert_topic(topic):
            self._alert(msg)
            return
        try:
            asset = topics.asset_of_data_topic(topic)
        except ValueError:
            asset = None
        if asset is not None and self.config.broker.subscribe_data:
            self._agent_batch(msg, str(asset))
        else:
            self._raw(msg)

    def _alert(self, msg: Message) -> None:
        """An alert (events are not data: acknowledged only), or a batch of a site named ``alerts``."""
        if _looks_like_batch(msg.payload):
            self._reserved(msg, "alerts")
            return
        self.counts.alerts_skipped += 1
        msg.ack()

    def _reserved(self, msg: Message, namespace: str) -> None:
        self._bad(msg, "gateway_batch", f"{topics.ROOT}/{namespace}/ is the namespace of "
                  f"{'alert events' if namespace == 'alerts' else 'agent status (agents/<id>/status)'}, "
                  f"not of data: no site may be named {namespace!r} (rename the site in the agent's "
                  "asset paths); nothing of this message stored")

    def _agent_batch(self, msg: Message, topic_asset: str) -> None:
        try:
            checked = self.checker.check(msg.payload)
        except WireFormatError as exc:
            self._bad(msg, "gateway_batch", f"invalid batch: {exc}")
            return
        strays = checked.assets - {topic_asset}
        if strays:
            self.counts.wrong_asset += 1
            more = f" and {len(strays) - 3} more" if len(strays) > 3 else ""
            shown = ", ".join(sorted(strays)[:3]) + more
            self._bad(msg, "gateway_batch", f"batch {checked.producer}/{checked.batch_id} holds samples of "
                      f"asset {shown}, not of its topic's asset {topic_asset}: the topic is authoritative "
                      f"(an agent publishes each machine's samples on {topics.ROOT}/<that machine>); "
                      "nothing of it stored", producer=checked.producer, batch_id=checked.batch_id)
            return
        if checked.rejected:
            self._bad_samples(msg, checked.producer, checked.batch_id, checked.rejected)
        self.counts.agent_batches += 1
        self.fleet.seen(checked.producer)
        if checked.record is None:
            msg.ack()
            return
        self._commit(msg, checked.record)

    def _bad_samples(self, msg: Message, producer: str, batch_id: str, rejected: dict[int, str]) -> None:
        samples, place = _samples_of(msg.payload)
        for index, reason in sorted(rejected.items()):
            where = {} if place is None else {"place": place(index, reason.split(":", 1)[0])}
            self.deadletter.write("gateway_sample", reason, topic=msg.topic, producer=producer,
                                  batch_id=batch_id, index=index, sample=samples[index], **where)
        self.stats.bad_payloads += 1
        log.warning("batch %s/%s on %s: %d samples rejected, kept in %s", producer, batch_id, msg.topic,
                    len(rejected), self.deadletter.path)

    def _status(self, msg: Message, agent_id: str) -> None:
        self.counts.status_messages += 1
        if not msg.payload:
            msg.ack()
            return
        try:
            st = fleet.parse_status(agent_id, msg.payload, self.config.site)
        except fleet.StatusError as exc:
            self._bad(msg, "gateway_status", str(exc))
            return
        now = time.time()
        self.fleet.status(st, now)
        log.info("agent %s is %s (status on %s)", agent_id, st.state, msg.topic)
        batch = fleet.status_batch(msg.topic, msg.payload, st, datetime.fromtimestamp(now, UTC))
        self._commit(msg, EncodedBatch.of_batch(batch))

    def _raw(self, msg: Message) -> None:
        self.counts.raw_messages += 1
        if self.mapper is None:
            self._bad(msg, "mqtt_payload", "no mapping for this topic")
            return
        digest = digest_of(msg.topic, msg.payload, msg.mid)
        if self._ring.redelivered(digest, msg.dup, msg.qos):
            self._redelivered(msg, digest)
            return
        try:
            result = self.mapper.map(msg.topic, msg.payload)
        except MappingError as exc:
            self._bad(msg, "mqtt_payload", exc.reason)
            return
        if result.problems:
            self.stats.bad_payloads += 1
            self.deadletter.write("mqtt_payload", "; ".join(result.problems), topic=msg.topic,
                                  payload=msg.payload)
        if not result.samples:
            msg.ack()
            return
        self._counter += 1
        batch = Batch(self.config.id, f"{self.nonce}-{self._counter:010d}", self._counter,
                      tuple(result.samples))
        redeliverable = msg.qos > 0
        marks = dict([self._ring.mark(digest)]) if redeliverable else None
        fut = self._commit(msg, EncodedBatch.of_batch(batch), marks)
        if redeliverable:
            self._ring.remember(digest, fut)
        self._hold()

        def settled(f: asyncio.Future[PutResult]) -> None:
            if redeliverable:
                self._ring.settle((digest,), f, committed=_committed(f))
            self._release()

        fut.add_done_callback(settled)

    def _redelivered(self, msg: Message, digest: bytes) -> None:
        """A redelivery of a raw message whose record was committed (only acknowledged) or is
        being committed (acknowledged if that commit succeeds; else the broker redelivers again)."""
        self.stats.duplicates_skipped += 1
        pending = self._ring.pending(digest)
        if pending is None:
            msg.ack()
            return
        self._hold()

        def settled(f: asyncio.Future[PutResult]) -> None:
            if _committed(f):
                msg.ack()
            else:  # it came on a later connection than the original: end that one too
                msg.end_session("session ended: buffer commit failed; the broker redelivers what was "
                                "not acknowledged", f.exception() if not f.cancelled() else None)
            self._release()

        pending.add_done_callback(settled)

    def _hold(self) -> None:
        self._held += 1
        if self._held >= _MAX_HELD:
            self.session.pause_reading()

    def _release(self) -> None:
        self._held -= 1
        if self._held < _MAX_HELD // 2:
            self.session.resume_reading()

    def _commit(self, msg: Message, record: EncodedBatch,
                marks: dict[str, str] | None = None) -> asyncio.Future[PutResult]:
        """Submit ``record`` (and ``marks``, in the same transaction); ``msg`` is acknowledged
        once it is committed. Returns the commit's future."""
        assert self._sink is not None
        n = len(record)
        self.stats.got(n)
        fut = self._sink.submit_records([record], marks)

        def done(f: asyncio.Future[PutResult]) -> None:
            if not _committed(f):  # no PUBACK; the connection ends: the broker redelivers
                self._commit_failed(msg, f)
                return
            if self._failing:
                log.warning("buffer commits succeed again (after %d failed)", self._failing)
                self._failing = 0
            if f.result().rejected:
                log.error("buffer refused a batch of %d samples from %s (overflow policy reject_new)",
                          n, msg.topic)
            msg.ack()

        fut.add_done_callback(done)
        return fut

    def _commit_failed(self, msg: Message, fut: asyncio.Future[PutResult]) -> None:
        """``msg``'s record was not committed: counted, logged once per change, and the connection
        it came on ended so that the broker redelivers it (see the module docstring)."""
        failure = RuntimeError("buffer commit cancelled") if fut.cancelled() else fut.exception()
        self.counts.uncommitted += 1
        self.stats.commit_failures += 1
        if not self._failing:
            log.error("buffer commit failed (%s): message on %s not acknowledged; ending the broker "
                      "session so that the broker redelivers it after the reconnect", failure, msg.topic)
        self._failing += 1
        msg.end_session(f"session ended: buffer commit failed ({failure}); the broker redelivers what "
                        "was not acknowledged", failure)

    def _bad(self, msg: Message, kind: str, reason: str, **context: Any) -> None:
        self.stats.bad_payloads += 1
        self.deadletter.write(kind, reason, topic=msg.topic, payload=msg.payload, **context)
        log.warning("message on %s refused (%s): %s; kept in %s", msg.topic, kind, reason,
                    self.deadletter.path)
        msg.ack()


def _looks_like_batch(payload: bytes) -> bool:
    """Whether ``payload`` is a zhizao wire-format document (JSON, maybe gzip, with its ``format``)."""
    try:
        doc = orjson.loads(wire.decompress(payload))
    except (WireFormatError, orjson.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("format") == wire.FORMAT


def _committed(fut: asyncio.Future[PutResult]) -> bool:
    return not fut.cancelled() and fut.exception() is None


def _samples_of(payload: bytes) -> tuple[list[Any], Callable[[int, str], str] | None]:
    """The sample objects of a batch whose envelope the checker found valid, in document order
    (a version-2 document's flattened: each with its series' asset, signal, unit and quality),
    and for version 2 the function naming a sample's field's place (``series[k].ts[j]``)."""
    doc = orjson.loads(wire.decompress(payload))
    if "series" in doc:
        return wire.flatten_series(doc["series"])
    samples: list[Any] = doc["samples"]
    return samples, None
