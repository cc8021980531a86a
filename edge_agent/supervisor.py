"""Keeps a connector running: reconnect with capped, jittered backoff, forever.

``await supervise(connector, sink)`` calls ``connector.run(sink)`` again after each failure:
:class:`~zhizao.errors.ConnectionLost` is logged as a warning (one line per outage, one when it
is back), a :class:`~zhizao.errors.SecurityError` or :class:`~zhizao.errors.ConfigError` as an
error and retried no faster than every ``slow_retry_s`` (a person must act; settings are never
weakened). The backoff resets once a run stayed up for ``healthy_after_s``. Any other exception
is a bug: logged with its traceback and retried like a lost connection, so one connector's bug
never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time

from edge_agent.connectors.base import Connector, Sink
from zhizao.backoff import Backoff
from zhizao.errors import ConfigError, ConnectionLost, SecurityError

log = logging.getLogger(__name__)


async def supervise(
    connector: Connector,
    sink: Sink,
    *,
    backoff: Backoff | None = None,
    healthy_after_s: float = 10.0,
    slow_retry_s: float = 30.0,
) -> None:
    """Run ``connector`` until cancelled (see the module docstring)."""
    backoff = backoff or Backoff(initial=0.5, cap=30.0)
    failing = False
    while True:
        started = time.monotonic()
        try:
            await connector.run(sink)
            delay = backoff.next()
        except ConnectionLost as exc:
            if time.monotonic() - started >= healthy_after_s:
                backoff.reset()
            delay = backoff.next()
            if not failing:
                log.warning("connector %s: %s; reconnecting with backoff", connector.name, exc)
            failing = True
        except (SecurityError, ConfigError) as exc:
            delay = max(slow_retry_s, backoff.next())
            log.error(
                "connector %s: %s; retrying in %.0f s with the same settings", connector.name, exc, delay
            )
            failing = True
        except Exception:
            log.exception("connector %s crashed; restarting it", connector.name)
            delay = backoff.next()
            failing = True
        connector.stats.connected = False
        await asyncio.sleep(delay)
        if failing and connector.stats.reconnects >= 0:
            log.debug("connector %s: reconnect attempt %d", connector.name, backoff.attempts)
