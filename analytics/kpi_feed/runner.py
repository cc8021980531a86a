"""The KPI feed's loop: compute and write every ``interval_s`` until stopped.

A failed round (store down) is logged, counted in :attr:`Runner.failures` and retried at the next
tick; the loop itself never dies from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.kpi.config import load_kpi_config
from analytics.kpi_feed.config import FeedConfig
from analytics.kpi_feed.feed import KpiFeed
from ingest.storage.registry import open_store
from zhizao.errors import StoreUnavailable
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)


class Runner:
    """Runs a :class:`KpiFeed` periodically. ``stop()`` ends :meth:`run` after the current round."""

    def __init__(self, feed: KpiFeed, interval_s: float, *, heartbeat: Path | None = None) -> None:
        """``heartbeat``: a file touched after every successful round (a healthcheck tests its age)."""
        self.feed = feed
        self.interval_s = interval_s
        self.heartbeat = heartbeat
        self.rounds = 0
        self.failures = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def tick(self, now: datetime | None = None) -> int:
        """One round at ``now`` (default: the current time); 0 samples when the store failed."""
        self.rounds += 1
        try:
            written = await self.feed.once(now or datetime.now(UTC))
        except StoreUnavailable as exc:
            self.failures += 1
            log.warning("KPI feed round failed (store unavailable), retrying in %.0f s: %s",
                        self.interval_s, exc)
            return 0
        if self.heartbeat is not None:
            try:
                self.heartbeat.touch()
            except OSError as exc:
                log.warning("cannot touch the heartbeat file %s: %s", self.heartbeat, exc)
        return written

    async def run(self, backfill_hours: float = 0.0) -> None:
        if backfill_hours > 0:
            now = datetime.now(UTC)
            with contextlib.suppress(StoreUnavailable):
                await self.feed.backfill(now - timedelta(hours=backfill_hours), now,
                                         timedelta(seconds=self.interval_s))
        while not self._stop.is_set():
            written = await self.tick()
            log.debug("KPI feed wrote %d samples", written)
            await wait_event(self._stop, self.interval_s)


async def serve(cfg: FeedConfig) -> None:
    """Open the configured store and run the feed until cancelled."""
    kpi_cfg, plant = load_kpi_config(cfg.kpi_config)
    async with open_store(cfg.storage) as store, open_store(cfg.sink_settings()) as sink:
        feed = KpiFeed(store, sink, plant, kpi_cfg, cfg.scopes, baselines=cfg.baselines_kwh_per_good_part)
        heartbeat = Path(cfg.heartbeat_file) if cfg.heartbeat_file else None
        await Runner(feed, cfg.interval_s, heartbeat=heartbeat).run(cfg.backfill_hours)
