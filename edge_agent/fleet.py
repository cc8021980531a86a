"""An agent's or gateway's health as the fleet convention's figures (:mod:`zhizao.fleet`), from the
counters both keep: their buffer's, their forwarders' and their sources' (connectors; the
gateway's broker intake)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from edge_agent.buffer import BufferStats
from edge_agent.connectors.base import ConnectorStats
from edge_agent.forwarder import ForwarderStats
from zhizao.fleet import FleetReport


def health_report(site: str, node_id: str, buffer: BufferStats, forwarders: Sequence[ForwarderStats],
                  sources: Sequence[ConnectorStats], *,
                  kind: Literal["agents", "gateways"] = "agents") -> FleetReport:
    """The report now: backlog and drops of the buffer, samples sent and dead-lettered by the
    forwarders, bad payloads and reconnections of the sources (totals since the process started)."""
    return FleetReport(
        site=site, node_id=node_id, kind=kind,
        backlog_samples=buffer.backlog_samples, backlog_age_s=buffer.backlog_age(),
        dropped_total=sum(buffer.dropped.values()),
        dead_letters_total=sum(f.dead_lettered for f in forwarders) + sum(s.bad_payloads for s in sources),
        reconnects_total=sum(s.reconnects for s in sources),
        sent_total=sum(f.sent_samples for f in forwarders),
    )
