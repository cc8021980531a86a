"""The KPI feed's loop: compute and write every ``interval_s`` until stopped.

A failed round (store down) is logged, counted in :attr:`Runner.failures` and retried at the next
tick; the loop itself never dies from it. **Rounds missed leave no gap**: the first successful
tick after failures first computes, oldest first, the rounds that were due since the last
successful one (``last + interval``, ``last + 2·interval`` … before the tick's own time), each
written at its own time as if it had run then. At most ``catch_up_rounds`` are computed (each
reads a shift of data); older missed rounds are skipped with one WARNING naming their time range
(``backfill_hours`` at a restart fills them) and counted in :attr:`Runner.skipped`. A catch-up
round that fails ends the catch-up; the next tick resumes from the last one written.

After a restart the last successful round is the time the heartbeat file holds (when one is
configured and ``backfill_hours`` is 0; the file is rewritten after every round written, caught-up
ones included, so a feed killed in the middle of a catch-up resumes it), so a restarted feed
catches up its downtime the same way. SIGTERM stops the loop between two rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.kpi.config import load_kpi_config
from analytics.kpi_feed.config import FeedConfig
from analytics.kpi_feed.feed import KpiFeed
from ingest.storage.registry import open_store
from zhizao.errors import StoreUnavailable
from zhizao.files import replace_atomically
from zhizao.waiting import wait_event

log = logging.getLogger(__name__)


class Runner:
    """Runs a :class:`KpiFeed` periodically. ``stop()`` ends :meth:`run` after the current round."""

    def __init__(self, feed: KpiFeed, interval_s: float, *, heartbeat: Path | None = None,
                 catch_up_rounds: int = 120) -> None:
        """``heartbeat``: a file touched after every successful round (a healthcheck tests its age);
        ``catch_up_rounds``: the most missed rounds computed after a failure (module docstring)."""
        self.feed = feed
        self.interval_s = interval_s
        self.heartbeat = heartbeat
        self.catch_up_rounds = catch_up_rounds
        self.rounds = 0
        self.failures = 0
        self.caught_up = 0
        """Missed rounds computed after the fact."""
        self.skipped = 0
        """Missed rounds beyond ``catch_up_rounds``, not computed (logged with their time range)."""
        self.last_ok: datetime | None = None
        """The time of the newest round written (its ``now``), ``None`` before the first."""
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def tick(self, now: datetime | None = None) -> int:
        """One round at ``now`` (default: the current time), after the rounds missed since the last
        successful one; the samples written, 0 when the store failed."""
        self.rounds += 1
        at = now or datetime.now(UTC)
        missed = self._missed(at)
        keep = missed[-self.catch_up_rounds:] if self.catch_up_rounds else []
        dropped = missed[:len(missed) - len(keep)]
        written = 0
        try:
            for t in keep:
                if self._stop.is_set():  # stopping: the rest is caught up after the restart
                    return written
                written += await self.feed.once(t)
                self._advance(t, dropped)
                dropped = []
                self.caught_up += 1
            written += await self.feed.once(at)
        except StoreUnavailable as exc:
            self.failures += 1
            log.warning("KPI feed round failed (store unavailable), retrying in %.0f s: %s",
                        self.interval_s, exc)
            return 0
        finally:
            if keep and self.last_ok is not None and self.last_ok >= keep[0]:
                log.info("KPI feed caught up missed rounds %s to %s", keep[0].isoformat(),
                         self.last_ok.isoformat())
        self._advance(at, dropped)
        return written

    def _missed(self, now: datetime) -> list[datetime]:
        """The round times due after :attr:`last_ok` and before ``now`` (half an interval clear)."""
        if self.last_ok is None:
            return []
        step = timedelta(seconds=self.interval_s)
        out: list[datetime] = []
        t = self.last_ok + step
        while t <= now - step / 2:
            out.append(t)
            t += step
        return out

    def _advance(self, t: datetime, skipped: list[datetime]) -> None:
        """A round at ``t`` was written; ``skipped`` (older missed rounds) are given up, named."""
        if skipped:
            self.skipped += len(skipped)
            log.warning("KPI feed: %d missed rounds from %s to %s are not computed (catch_up_rounds = %d); "
                        "restart with backfill_hours to fill them", len(skipped), skipped[0].isoformat(),
                        skipped[-1].isoformat(), self.catch_up_rounds)
        self.last_ok = t
        self._beat(t)

    def _beat(self, t: datetime) -> None:
        """The heartbeat file: modified now (a healthcheck tests its age) and holding ``t``, the time
        of the round just written (a restart catches up from it, also after dying mid catch-up,
        when ``t`` is older than the file's modification time). Written atomically."""
        if self.heartbeat is None:
            return
        try:
            replace_atomically(self.heartbeat, f"{t.isoformat()}\n".encode())
        except OSError as exc:
            log.warning("cannot write the heartbeat file %s: %s", self.heartbeat, exc)

    def _last_heartbeat(self) -> datetime | None:
        """The last round of a previous run: the time the heartbeat file holds, or for a file
        without one (an earlier version touched it empty) its modification time."""
        if self.heartbeat is None:
            return None
        try:
            text = self.heartbeat.read_text(encoding="utf-8").strip()
            mtime = self.heartbeat.stat().st_mtime
        except (OSError, UnicodeDecodeError):  # no heartbeat yet: a first start
            return None
        try:
            held = datetime.fromisoformat(text)
        except ValueError:
            return datetime.fromtimestamp(mtime, UTC)
        return held if held.tzinfo is not None else held.replace(tzinfo=UTC)

    async def run(self, backfill_hours: float = 0.0) -> None:
        """Tick every ``interval_s`` until :meth:`stop`; first the ``backfill_hours`` history, or,
        without it, catch up from the heartbeat file's time (the last round of a previous run)."""
        if backfill_hours > 0:
            now = datetime.now(UTC)
            with contextlib.suppress(StoreUnavailable):
                await self.feed.backfill(now - timedelta(hours=backfill_hours), now,
                                         timedelta(seconds=self.interval_s))
        elif self.last_ok is None:
            self.last_ok = self._last_heartbeat()
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
        runner = Runner(feed, cfg.interval_s, heartbeat=heartbeat, catch_up_rounds=cfg.catch_up_rounds)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not main thread
            loop.add_signal_handler(signal.SIGTERM, runner.stop)  # docker stop, a k8s rollout
        await runner.run(cfg.backfill_hours)
