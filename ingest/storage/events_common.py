"""Event filtering shared by the backends (the same rules as :class:`~ingest.storage.base.EventQuery`)."""

from __future__ import annotations

from ingest.storage.base import EventQuery, asset_matches
from zhizao.events import Event


def event_matches(e: Event, q: EventQuery) -> bool:
    """True when ``e`` satisfies every filter of ``q``."""
    if q.asset and not asset_matches(e.asset, q.asset):
        return False
    if q.end is not None and not e.start < q.end:
        return False
    if q.start is not None and e.end is not None and e.end < q.start:
        return False
    if q.state is not None and e.state is not q.state:
        return False
    return q.source is None or e.source is q.source
