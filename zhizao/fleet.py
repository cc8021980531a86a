"""The edge fleet's health as samples: the convention agents and gateways follow so the
*Edge fleet* dashboard can chart them from the same store as the telemetry.

An agent (or gateway) with id ``<id>`` at site ``<site>`` reports, every ``interval`` (30 s is
plenty), one sample per figure on the asset ``<site>/fleet/agents/<id>`` (``.../gateways/<id>``
for a gateway), through its normal uplink:

=========================== ===== ==========================================================
signal                      unit  meaning
=========================== ===== ==========================================================
``fleet.up``                      1 — "I am alive"; a gap in these is the agent being offline
``fleet.backlog_samples``         samples waiting in the durable buffer
``fleet.backlog_age_s``     s     age of the oldest sample waiting (0 when empty)
``fleet.dropped_total``           samples dropped by the overflow policy (monotonic counter)
``fleet.dead_letters_total``      samples rejected and written to the dead-letter file
``fleet.reconnects_total``        southbound + northbound reconnections
``fleet.sent_total``              samples acknowledged by the receiver
=========================== ===== ==========================================================

The same figures are exported as Prometheus metrics by the agent; these samples exist so one
InfluxDB datasource is enough. ``fleet`` is an ordinary asset level, so ids must be valid path
segments (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from zhizao.model import AssetPath, Sample

AREA: Final = "fleet"
UP: Final = "fleet.up"
BACKLOG_SAMPLES: Final = "fleet.backlog_samples"
BACKLOG_AGE_S: Final = "fleet.backlog_age_s"
DROPPED_TOTAL: Final = "fleet.dropped_total"
DEAD_LETTERS_TOTAL: Final = "fleet.dead_letters_total"
RECONNECTS_TOTAL: Final = "fleet.reconnects_total"
SENT_TOTAL: Final = "fleet.sent_total"


def fleet_asset(site: str, node_id: str, kind: Literal["agents", "gateways"] = "agents") -> AssetPath:
    """``<site>/fleet/<kind>/<node_id>``; ``ValueError`` if ``site`` or ``node_id`` is not a valid segment."""
    return AssetPath(site, AREA, kind, node_id)


@dataclass(frozen=True, slots=True)
class FleetReport:
    """One health report of an agent or gateway (counters are totals since the process started)."""

    site: str
    node_id: str
    backlog_samples: int
    backlog_age_s: float
    dropped_total: int
    dead_letters_total: int
    reconnects_total: int
    sent_total: int
    kind: Literal["agents", "gateways"] = "agents"

    def samples(self, ts: datetime) -> list[Sample]:
        """The report as samples at ``ts`` (timezone-aware UTC)."""
        asset = fleet_asset(self.site, self.node_id, self.kind)
        figures: list[tuple[str, int | float, str | None]] = [
            (UP, 1, None),
            (BACKLOG_SAMPLES, self.backlog_samples, None),
            (BACKLOG_AGE_S, float(self.backlog_age_s), "s"),
            (DROPPED_TOTAL, self.dropped_total, None),
            (DEAD_LETTERS_TOTAL, self.dead_letters_total, None),
            (RECONNECTS_TOTAL, self.reconnects_total, None),
            (SENT_TOTAL, self.sent_total, None),
        ]
        return [Sample(asset, signal, ts, value, unit) for signal, value, unit in figures]
