"""The in-process MQTT broker of ``zhizao demo`` / ``zhizao check`` (amqtt, MQTT 3.1.1).

``async with EmbeddedBroker(port=p) as broker: ...`` listens on ``127.0.0.1:<port>`` (a free port
when ``port`` is 0/None) until the block ends. Production uses a real broker (Mosquitto, EMQX...);
this exists so the one-box demo needs no external service. It is the only module importing amqtt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from types import TracebackType
from typing import Any, Self

from zhizao.errors import ConnectionLost
from zhizao.net import free_port

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """See the module docstring. Attributes once entered: ``host``, ``port``, ``url``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"mqtt://{host}:{self.port}"
        self._broker: Any = None

    async def __aenter__(self) -> Self:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._broker = Broker(config)
                await self._broker.start()
        except Exception as exc:  # amqtt raises its own BrokerException and OSError alike
            raise ConnectionLost(f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {exc}"
                                 ) from exc
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._broker.shutdown(), 10)
            self._broker = None

