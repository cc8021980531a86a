"""Prometheus metrics of the gateway, read from the live counters at scrape time.

Every figure the dashboards' fleet convention charts is here too, under ``zhizao_gateway_*``:
buffer backlog and drops (the agent's :class:`~edge_agent.buffer.BufferStats`), forwarding
(the agent's :class:`~edge_agent.forwarder.ForwarderStats`, summed over the parallel forwarders),
intake (messages by kind, refused payloads, raw redeliveries recognised, reconnects, batches by
check path), frames migrated from an older gateway's buffer, and the fleet (agents online/offline).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge_agent.metrics import clock_step_metrics, counter_by

if TYPE_CHECKING:
    from gateway.service import Gateway

P = "zhizao_gateway_"

DEAD_LETTER_KINDS = ("gateway_batch", "gateway_sample", "gateway_status", "mqtt_payload", "rejected_sample")
"""What the intake and the forwarders dead-letter (exported at 0 before the first)."""


class GatewayCollector(Collector):
    """Collects from one running :class:`~gateway.service.Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        b = gw.buffer.stats
        yield _gauge("buffer_backlog_samples", "Rows waiting in the durable buffer", b.backlog_samples)
        yield _gauge("buffer_backlog_bytes", "Bytes of row data in the durable buffer", b.backlog_bytes)
        yield _gauge("buffer_backlog_age_seconds", "Age of the oldest buffered row", b.backlog_age())
        yield _counter("buffer_committed_samples", "Rows committed to the buffer", b.committed)
        yield _counter("buffer_commits", "Buffer transactions (group commits)", b.commits)
        yield counter_by(P + "buffer_dropped_samples", "Rows dropped by policy", "reason",
                         sorted(b.dropped.items()))
        yield _counter("buffer_corrupt_rows", "Damaged buffer rows skipped", b.corrupt_rows)
        yield from clock_step_metrics(P, b)
        fw = gw.forwarders
        yield _counter("sent_samples", "Samples acknowledged by ingest",
                       sum(f.stats.sent_samples for f in fw))
        yield _counter("sent_batches", "Batches acknowledged by ingest",
                       sum(f.stats.sent_batches for f in fw))
        yield _counter("dead_lettered_samples", "Samples ingest refused for good (dead-letter file)",
                       sum(f.stats.dead_lettered for f in fw))
        yield _counter("uplink_retries", "Sends retried because ingest was unavailable",
                       sum(f.stats.retries for f in fw))
        yield _gauge("uplink_up", "1 when the last send to ingest succeeded",
                     int(all(f.stats.up for f in fw)))
        yield counter_by(P + "uplink_refused", "Answers of the uplink's URL that were no delivery, per "
                         "reason (HTTP 401/403, or not ingest's: 'HTTP 404', 'HTTP 200 not ingest'): kept in "
                         "the buffer, retried", "reason", sorted(gw.uplink.refused.items()))
        yield _counter("uplink_id_conflicts", "Batches ingest answered as duplicates of an id it had stored "
                       "for other data: their samples were not stored", gw.uplink.id_conflicts)
        failures: dict[str, int] = {"take": 0, "ack": 0, "deadletter": 0}
        for f in fw:
            for op, n in f.stats.buffer_failures.items():
                failures[op] = failures.get(op, 0) + n
        yield counter_by(P + "forwarder_buffer_failures", "Buffer operations of the forwarders that failed "
                         "(disk full...): take (retried), ack (retried), deadletter (a batch's rejected "
                         "samples not written: sent again)", "op", sorted(failures.items()))
        lost = gw.deadletter.overwritten
        yield counter_by(P + "dead_letters_overwritten", "Dead-lettered items lost when a rotation overwrote "
                         "the rotated file <path>.1", "kind",
                         [(kind, lost.get(kind, 0)) for kind in sorted({*DEAD_LETTER_KINDS, *lost})])
        s, c = gw.intake.stats, gw.intake.counts
        yield _gauge("broker_connected", "1 while connected to the plant broker", int(s.connected))
        yield _counter("broker_reconnects", "Reconnections to the plant broker", s.reconnects)
        yield counter_by(P + "messages", "Messages received, by kind", "kind",
                         [("agent_batch", c.agent_batches), ("status", c.status_messages),
                          ("raw", c.raw_messages), ("alert_skipped", c.alerts_skipped)])
        yield _counter("bad_payloads", "Messages or samples refused at intake (dead-letter file)",
                       s.bad_payloads)
        yield _counter("wrong_asset_batches", "Agent batches refused at intake (dead-letter file) for a "
                       "sample whose asset is not the one its topic names", c.wrong_asset)
        yield _counter("uncommitted_messages", "Messages left un-acknowledged after a failed commit",
                       c.uncommitted)
        yield _counter("duplicates_skipped", "Raw vendor messages the broker redelivered after their "
                       "commit: acknowledged, not stored again", s.duplicates_skipped)
        yield _counter("samples_received", "Samples received from the broker", s.samples_read)
        yield _gauge("buffer_backlog_batches", "Agent batches (records) waiting in the durable buffer",
                     b.backlog_records)
        yield counter_by(P + "checked_batches", "Agent batches checked at intake, by path (fast: stored as "
                         "received; slow: decoded by the reference decoder)", "path",
                         [("fast", gw.intake.checker.fast), ("slow", gw.intake.checker.slow)])
        yield _counter("checked_v2_batches", "Agent batches in wire-format version 2 taken by the fast path "
                       "(stored and forwarded as v2)", gw.intake.checker.fast_v2)
        yield _counter("migrated_frames", "Frames of an older gateway moved into records at start",
                       gw.migrated_frames)
        agents = GaugeMetricFamily(P + "agents", "Agents known from status messages", labels=["state"])
        for state, n in gw.fleet.counts().items():
            agents.add_metric([state], n)
        yield agents


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, value=value)


def registry_for(gateway: Gateway) -> CollectorRegistry:
    """A registry holding only this gateway's metrics."""
    reg = CollectorRegistry()
    reg.register(GatewayCollector(gateway))
    return reg
