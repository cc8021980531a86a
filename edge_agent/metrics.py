"""Prometheus metrics of a running agent, read from the components' counters at scrape time.

Nothing is counted twice or per sample on the hot path: the buffer, forwarder, connectors and
dead-letter file keep plain counters and :class:`AgentCollector` turns them into metric
families when ``/metrics`` is scraped. Uplink latency is the one histogram, observed per batch.

Per-connector families that only one kind of connector counts are exported for connectors of
that kind (:data:`ONLY_FOR`: ``mqtt_messages``, ``mqtt_duplicates_skipped``, ``bad_payloads`` for
MQTT; ``resubscribes``, ``skipped_nodes``, ``values_skipped`` for OPC UA), the others for every
connector. Every family is listed in ``edge_agent/README.md`` (a test checks it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.buffer import BufferStats, SqliteBuffer
from edge_agent.connectors.base import Connector
from edge_agent.deadletter import DeadLetter
from edge_agent.forwarder import Forwarder

P = "zhizao_agent_"

ONLY_FOR: Final[dict[str, str]] = {
    "msgs": "mqtt", "dup": "mqtt", "bad": "mqtt", "resub": "opcua", "gone": "opcua", "skipped": "opcua",
}
"""Per-connector families (keys of :meth:`AgentCollector.collect`) exported only for connectors of
one ``type``; a connector of unknown type (``kinds`` not given) gets every family."""


class AgentCollector(Collector):
    """Reads the agent's counters on each scrape."""

    def __init__(
        self,
        buffer: SqliteBuffer,
        forwarder: Forwarder,
        connectors: Sequence[Connector],
        deadletter: DeadLetter,
        info: dict[str, str],
        *,
        kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.buffer = buffer
        self.forwarder = forwarder
        self.connectors = connectors
        self.deadletter = deadletter
        self.info = info
        self.kinds = dict(kinds or {})
        """Connector name → its ``type`` (``"opcua"``, ``"mqtt"``): see :data:`ONLY_FOR`."""

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(P + "build", "Agent version and config hash", value=self.info)
        per: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "read": CounterMetricFamily(
                P + "samples_read", "Samples read from sources", labels=["connector"]
            ),
            "msgs": CounterMetricFamily(P + "mqtt_messages", "MQTT messages received", labels=["connector"]),
            "bad": CounterMetricFamily(
                P + "bad_payloads", "Messages that did not parse or map, wholly or in part (dead-lettered), "
                "by payload mapping (mapping=\"\": no mapping matched the topic)",
                labels=["connector", "mapping"],
            ),
            "dup": CounterMetricFamily(
                P + "mqtt_duplicates_skipped",
                "MQTT redeliveries of messages already committed (acknowledged, not stored again)",
                labels=["connector"],
            ),
            "rec": CounterMetricFamily(P + "reconnects", "Reconnects to the source", labels=["connector"]),
            "resub": CounterMetricFamily(
                P + "resubscribes", "Subscriptions re-created by the staleness watchdog", labels=["connector"]
            ),
            "gone": GaugeMetricFamily(
                P + "skipped_nodes", "OPC UA nodes skipped: reported missing by the server, or refused at "
                "run time (an unknown namespace URI, a browse name that is no signal name)",
                labels=["connector"],
            ),
            "up": GaugeMetricFamily(
                P + "connector_up",
                "1 while collecting from the source (OPC UA: once its monitored items exist)",
                labels=["connector"],
            ),
            "age": GaugeMetricFamily(
                P + "connector_last_data_age_seconds",
                "Seconds since the last sample read",
                labels=["connector"],
            ),
            "cfail": CounterMetricFamily(
                P + "connector_commit_failures",
                "Buffer commits of a connector's data that failed (OPC UA: samples kept and retried; "
                "MQTT: not acknowledged, session ended so that the broker redelivers)",
                labels=["connector"],
            ),
        }
        cdrop = CounterMetricFamily(
            P + "connector_samples_dropped",
            "Samples a connector read and dropped under a named policy (commit_failed: beyond its "
            "bound while buffer commits fail, or QoS 0 MQTT data of a failed commit; "
            "stopped_uncommitted: OPC UA data still uncommitted when the agent stopped; "
            "connection_lost: MQTT data the broker cannot resend, read on a connection that dropped "
            "before its commit)",
            labels=["connector", "reason"],
        )
        skipped = CounterMetricFamily(
            P + "values_skipped",
            "Source values not made into samples (OPC UA repeat: same source timestamp, value and "
            "status as the last one collected; no_value: Bad without a value and none to repeat; "
            "unsupported_type: an array, structure or ByteString, which has no zhizao form)",
            labels=["connector", "reason"],
        )
        now = time.monotonic()
        for c in self.connectors:
            s = c.stats
            kind = self.kinds.get(c.name)
            values: dict[str, float] = {
                "read": s.samples_read, "msgs": s.messages, "bad": s.bad_payloads,
                "dup": s.duplicates_skipped, "rec": s.reconnects, "resub": s.resubscribes,
                "gone": s.vanished_nodes, "up": 1.0 if s.connected else 0.0,
                "age": now - s.last_data if s.last_data is not None else float("nan"),
                "cfail": s.commit_failures,
            }
            for key, value in values.items():
                if kind is None or ONLY_FOR.get(key, kind) == kind:
                    if key == "bad":  # by payload mapping (MQTT's bad_by_mapping)
                        for mapping, n in sorted((s.bad_by_mapping or {"": s.bad_payloads}).items()):
                            per[key].add_metric([c.name, mapping], n)
                    else:
                        per[key].add_metric([c.name], value)
            for reason, n in sorted(s.dropped.items()):
                cdrop.add_metric([c.name, reason], n)
            if kind is None or ONLY_FOR["skipped"] == kind:
                for reason, n in sorted(s.skipped.items()):
                    skipped.add_metric([c.name, reason], n)
        yield from per.values()
        yield cdrop
        yield skipped
        b = self.buffer.stats
        f = self.forwarder.stats
        yield CounterMetricFamily(
            P + "samples_committed", "Samples committed to the buffer", value=b.committed
        )
        yield CounterMetricFamily(
            P + "samples_sent", "Samples acknowledged by the receiver", value=f.sent_samples
        )
        yield CounterMetricFamily(
            P + "batches_sent", "Batches acknowledged by the receiver", value=f.sent_batches
        )
        yield counter_by(P + "samples_dropped", "Samples dropped by the buffer policy", "reason",
                         sorted(b.dropped.items()))
        dead = self.deadletter
        yield counter_by(P + "dead_lettered", "Items written to the dead-letter file", "kind",
                         [(kind, dead.counts.get(kind, 0)) for kind in ("mqtt_payload", "rejected_sample")])
        yield counter_by(
            P + "dead_letters_overwritten",
            "Dead-lettered items lost: in the rotated file <path>.1 when the next rotation overwrote it",
            "kind",
            [(kind, dead.overwritten.get(kind, 0))
             for kind in sorted({"mqtt_payload", "rejected_sample", *dead.overwritten})],
        )
        yield counter_by(
            P + "forwarder_buffer_failures",
            "Buffer operations of the forwarder that failed (disk full...), by op: take (retried), ack of "
            "delivered batches (retried; they stay in the buffer, not sent again), deadletter (a batch's "
            "rejected samples not written: the batch is sent again)",
            "op", sorted(f.buffer_failures.items()),
        )
        yield GaugeMetricFamily(
            P + "backlog_samples", "Samples waiting in the buffer", value=b.backlog_samples
        )
        yield GaugeMetricFamily(
            P + "backlog_bytes", "Bytes of samples waiting in the buffer", value=b.backlog_bytes
        )
        yield GaugeMetricFamily(
            P + "backlog_age_seconds", "Age of the oldest sample in the buffer", value=b.backlog_age()
        )
        yield from clock_step_metrics(P, b)
        yield CounterMetricFamily(P + "buffer_corruptions", "Buffer files found corrupt", value=b.corruptions)
        yield CounterMetricFamily(
            P + "buffer_corrupt_rows", "Damaged buffer rows skipped", value=b.corrupt_rows
        )
        yield CounterMetricFamily(P + "uplink_retries", "Uplink sends retried", value=f.retries)
        yield GaugeMetricFamily(
            P + "uplink_up", "1 while the last uplink send succeeded", value=1.0 if f.up else 0.0
        )
        yield counter_by(
            P + "uplink_refused",
            "Answers that were no delivery, per reason: the receiver refused this agent's credentials "
            "or its topic (HTTP 401/403, MQTT 'Not authorized'), or the answer was not ingest's "
            "('HTTP 404', 'HTTP 200 not ingest'): data kept in the buffer, retried; prefixed "
            "'status: ', MQTT status messages the broker refused (not retried)",
            "reason", sorted(getattr(self.forwarder.uplink, "refused", {}).items()),
        )
        yield CounterMetricFamily(
            P + "uplink_id_conflicts",
            "Batches ingest answered as duplicates of an id it had stored for other data: their samples "
            "were not stored (HTTP uplink)",
            value=getattr(self.forwarder.uplink, "id_conflicts", 0),
        )


class AgentMetrics:
    """The registry of one agent: the collector plus the uplink latency histogram."""

    def __init__(self, collector: AgentCollector) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        self.latency = Histogram(
            P + "uplink_latency_seconds",
            "Time from sending a batch to the receiver's acknowledgement",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        collector.forwarder.observe_latency = self.latency.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)


def clock_step_metrics(prefix: str, b: BufferStats) -> Iterator[Metric]:
    """``<prefix>clock_steps_total{kind}`` and ``<prefix>clock_last_step_seconds`` of a buffer's
    stats (the agent's and the site gateway's buffer alike)."""
    yield counter_by(
        prefix + "clock_steps",
        "Steps of the wall clock the buffer noticed, by kind: forward/backward, measured against "
        "CLOCK_BOOTTIME while running or across a restart in the same boot (buffered samples are "
        "aged from their arrival, not by the step); backward_after_reboot, the wall clock earlier "
        "than at the buffer's last use before a reboot (elapsed time unknown: nothing re-aged)",
        "kind", sorted(b.clock_steps.items()),
    )
    yield GaugeMetricFamily(
        prefix + "clock_last_step_seconds",
        "The last wall-clock step the buffer noticed, signed (ahead > 0; 0 when none)",
        value=b.last_clock_step_s,
    )


def counter_by(name: str, doc: str, label: str, values: Iterable[tuple[str, float]]) -> CounterMetricFamily:
    """A counter family ``name`` with one ``label``, a sample per ``(label value, count)`` of
    ``values``, in their order."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, n in values:
        family.add_metric([key], n)
    return family
