"""An agent's or gateway's health as the fleet convention's figures (:mod:`zhizao.fleet`), from the
counters both keep: their buffer's, their forwarders' and their sources' (connectors; the
gateway's broker intake).

An agent's own reports (:func:`agent_samples`) add ``fleet.instance`` (:data:`INSTANCE`): a random
id drawn when the agent process starts, the same in all its reports. Two boxes configured with
the same ``agent.id`` report two instances whose samples interleave in time, which ingest's fleet
view (``GET /api/v1/agents``, :mod:`gateway.fleet_api`) flags; a restart changes the instance
once, which it does not. The last report of a clean stop says ``fleet.up = 0``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

from edge_agent.buffer import BufferStats
from edge_agent.connectors.base import ConnectorStats
from edge_agent.forwarder import ForwarderStats
from zhizao.fleet import UP, FleetReport
from zhizao.model import Sample

INSTANCE: Final = "fleet.instance"
"""String signal: the reporting process's instance id (:func:`new_instance_id`)."""


def new_instance_id() -> str:
    """A random id for one agent process (12 hex digits)."""
    return secrets.token_hex(6)


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


def agent_samples(report: FleetReport, ts: datetime, instance: str, *, up: bool = True) -> list[Sample]:
    """The samples of an agent's ``report`` at ``ts``: the convention's figures with ``fleet.up``
    1 (``up=False``: 0, the last report of a clean stop) and ``fleet.instance``."""
    samples = [Sample(s.asset, s.signal, s.ts, 0, s.unit) if s.signal == UP and not up else s
               for s in report.samples(ts)]
    samples.append(Sample(samples[0].asset, INSTANCE, ts, instance))
    return samples
