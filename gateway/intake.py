"""The southbound side: messages from the plant broker into the durable buffer, one record each.

:class:`UnsIntake` is a connector in the edge agent's sense (``name``, ``stats``,
``run(sink)``), so the agent's :func:`~edge_agent.supervisor.supervise` keeps it connected. Per
message (on the event loop, in arrival order):

- ``zhizao/v1/<site>/<area>/<line>/<machine>`` — a wire-format batch (version 1 or 2) from an
  agent's MQTT uplink (:mod:`zhizao.wire`, optionally gzip), checked strictly by
  :class:`~gateway.wirecheck.BatchChecker` and stored as ONE buffer record: the agent's document
  as it came (decompressed, in its version) under the agent's ``(producer, batch_id, seq)`` —
  nothing decoded into samples, nothing re-encoded. An invalid envelope is dead-lettered whole
  (``gateway_batch``). A batch with invalid samples (the rare, slow case) has them dead-lettered
  one by one (``gateway_sample``, with its index, the sample — a version-2 one with its series'
  fields — and, for version 2, its ``place`` such as ``series[1].ts[2]``) and its valid samples
  stored re-encoded in the document's version, in their order, under the same identity.
- ``zhizao/v1/agents/<id>/status`` — birth / last will (:mod:`gateway.fleet`): fleet state
  updated, fleet samples stored as a record under a deterministic id. Empty payloads (a cleared
  retained message) are only acknowledged.
- anything else — a raw vendor topic, mapped with the agent's :class:`~edge_agent.mapping.PayloadMapper`
  and stored under the gateway's own id (``<gateway id>``, ``<boot nonce>-<n>``). Unmappable
  payloads are dead-lettered (``mqtt_payload``).

Every message is acknowledged to the broker only once its record is committed to the buffer
(``sink.submit_records`` resolved; records of many messages share one group commit); a message
whose record could not be committed is not acknowledged and comes back after the next connect.
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


@runtime_checkable
class RecordSink(Protocol):
    """Where the intake commits records (the agent's :class:`~edge_agent.buffer.SqliteBuffer`)."""

    def submit_records(self, records: Sequence[EncodedBatch]) -> asyncio.Future[PutResult]: ...


@dataclass(slots=True)
class IntakeCounts:
    """Messages by kind, and records the buffer failed to commit (left un-acknowledged)."""

    agent_batches: int = 0
    status_messages: int = 0
    raw_messages: int = 0
    uncommitted: int = 0


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
        self.checker = BatchChecker()
        b = config.broker
        shared = f"$share/{b.share_group}/" if b.share_group else ""
        self.filters = ([shared + topics.DATA_FILTER] if b.subscribe_data else []) + (
            [topics.STATUS_FILTER] if b.subscribe_status else []) + (
            [shared + f for f in self.mapper.filters] if self.mapper is not None else [])
        self.session = BrokerSession(b, b.client_id or config.id, self.filters)

    async def run(self, sink: Sink) -> None:
        """One connection (see :class:`gateway.mqtt.BrokerSession`); ``ConnectionLost`` when it drops."""
        self.bind(sink)
        try:
            await self.session.run(self.handle, self._connected)
        finally:
            self.stats.connected = False

    def _connected(self) -> None:
        self._runs += 1
        if self._runs > 1:
            self.stats.reconnects += 1
        self.stats.connected = True

    def bind(self, sink: Sink | RecordSink) -> None:
        """Where :meth:`handle` commits records (``run`` binds the sink it is given, which must
        take records: the agent's buffer does)."""
        if not isinstance(sink, RecordSink):
            raise TypeError(f"the gateway's intake needs a buffer taking records, got {type(sink).__name__}")
        self._sink = sink

    def handle(self, msg: Message) -> None:
        """Route one message (see the module docstring); called on the event loop."""
        self.stats.messages += 1
        topic = msg.topic
        if topic.startswith(_STATUS_PREFIX) and topic.endswith("/status"):
            self._status(msg, topic[len(_STATUS_PREFIX):-len("/status")])
            return
        try:
            asset = topics.asset_of_data_topic(topic)
        except ValueError:
            asset = None
        if asset is not None and self.config.broker.subscribe_data:
            self._agent_batch(msg)
        else:
            self._raw(msg)

    def _agent_batch(self, msg: Message) -> None:
        try:
            checked = self.checker.check(msg.payload)
        except WireFormatError as exc:
            self._bad(msg, "gateway_batch", f"invalid batch: {exc}")
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
        self._commit(msg, EncodedBatch.of_batch(batch))

    def _commit(self, msg: Message, record: EncodedBatch) -> None:
        assert self._sink is not None
        n = len(record)
        self.stats.got(n)
        fut = self._sink.submit_records([record])

        def done(f: asyncio.Future[PutResult]) -> None:
            if f.cancelled() or f.exception() is not None:
                self.counts.uncommitted += 1
                return  # no PUBACK: the broker redelivers after the next connect
            if f.result().rejected:
                log.error("buffer refused a batch of %d samples from %s (overflow policy reject_new)",
                          n, msg.topic)
            msg.ack()

        fut.add_done_callback(done)

    def _bad(self, msg: Message, kind: str, reason: str, **context: Any) -> None:
        self.stats.bad_payloads += 1
        self.deadletter.write(kind, reason, topic=msg.topic, payload=msg.payload, **context)
        log.warning("message on %s refused (%s): %s; kept in %s", msg.topic, kind, reason,
                    self.deadletter.path)
        msg.ack()


def _samples_of(payload: bytes) -> tuple[list[Any], Callable[[int, str], str] | None]:
    """The sample objects of a batch whose envelope the checker found valid, in document order
    (a version-2 document's flattened: each with its series' asset, signal, unit and quality),
    and for version 2 the function naming a sample's field's place (``series[k].ts[j]``)."""
    doc = orjson.loads(wire.decompress(payload))
    if "series" in doc:
        return wire.flatten_series(doc["series"])
    samples: list[Any] = doc["samples"]
    return samples, None
