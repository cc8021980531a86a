"""``zhizao analytics serve --config FILE``: run the scoring service until SIGTERM / SIGINT.

SIGTERM or Ctrl-C ends the loop after the current step (the state is saved after every step, so
even ``kill -9`` only redoes the step in flight, without duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from analytics.scoring.service.config import ServiceConfig
from analytics.scoring.service.health import serve_health
from analytics.scoring.service.service import ScoringService

log = logging.getLogger(__name__)


async def serve(cfg: ServiceConfig) -> None:
    service = ScoringService(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop)
    async with serve_health(service, cfg.health.host, cfg.health.port):
        log.info("scoring %s from %s, models in %s, state in %s", ", ".join(cfg.scopes),
                 cfg.ingest.url if cfg.ingest else f"the {cfg.storage.backend if cfg.storage else '?'} store",
                 cfg.registry, cfg.state_dir)
        await service.run()
    log.info("scoring service stopped: %d rounds, %d rows scored, %d event updates", service.rounds,
             service.rows, service.events)
