"""Anomaly contributors as series: Grafana's InfluxQL cannot read the contributors inside an event's
JSON, so the feed mirrors them as ``anomaly.contrib.<signal>`` samples (share of the score, 0..1) on
the machine, timestamped at each feed round while the episode is open or ended less than an hour ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from ingest.storage.base import EventQuery, Store
from zhizao.events import Event, EventSource
from zhizao.model import AssetPath, Sample, valid_signal

PREFIX: Final = "anomaly.contrib."
RECENT: Final = timedelta(hours=1)


def contributor_samples(events: list[Event], now: datetime) -> list[Sample]:
    """Samples of the contributors of each machine's latest anomaly event (others are ignored)."""
    latest: dict[str, Event] = {}
    for e in events:
        if e.source is EventSource.ANOMALY and e.contributors and (
                e.asset not in latest or e.start > latest[e.asset].start):
            latest[e.asset] = e
    out: list[Sample] = []
    for asset, e in sorted(latest.items()):
        try:
            path = AssetPath.parse(asset)
        except ValueError:
            continue  # a line- or site-wide event has no machine to chart on
        for c in e.contributors:
            name = PREFIX + c.signal
            if valid_signal(name):
                out.append(Sample(path, name, now, float(c.weight), "ratio"))
    return out


async def mirror(store: Store, scope: str, now: datetime) -> list[Sample]:
    """Contributor samples of the anomaly events under ``scope`` open at ``now`` or ended within an hour."""
    q = EventQuery(asset=scope, start=now - RECENT, end=now + timedelta(seconds=1),
                   source=EventSource.ANOMALY)
    events = await store.query_events(q)
    return contributor_samples(events, now)
