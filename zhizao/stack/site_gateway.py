"""The site gateway in the one-box stack (``zhizao check --gateway``): agent → broker → gateway → ingest.

``async with SiteGateway(...) as gw`` runs :class:`gateway.service.Gateway` (shared subscription on
the broker, durable buffer, HTTP to ingest) as a task of this loop. :meth:`drain` waits until
everything it received is delivered to ingest (buffer empty and nothing new arriving).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.config import GatewayConfig
from gateway.service import Gateway


class SiteGateway:
    """See the module docstring."""

    def __init__(self, *, state_dir: Path, broker: tuple[str, int], ingest_url: str, site: str,
                 gateway_id: str = "gw-check") -> None:
        self.config = GatewayConfig.model_validate({
            "id": gateway_id, "site": site,
            "broker": {"host": broker[0], "port": broker[1], "share_group": "zhizao-gateways"},
            "buffer": {"path": str(state_dir / "gateway-buffer.sqlite"), "commit_interval_s": 0.05},
            "uplink": {"concurrency": 4, "http": {"url": ingest_url, "linger_s": 0.2}},
            "deadletter_path": str(state_dir / "gateway-deadletter.jsonl"),
            "health": {"port": 0},
        })
        self.state_dir = state_dir
        self.gateway = Gateway(self.config)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.gateway.__aenter__()
        self._task = asyncio.create_task(self.gateway.run(), name="site-gateway")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.gateway.__aexit__(et, e, tb)

    @property
    def backlog(self) -> int:
        return self.gateway.buffer.stats.backlog_samples

    async def drain(self, stall_s: float, quiet_s: float = 2.0) -> None:
        """Until the buffer is empty and nothing was committed for ``quiet_s``; ``TimeoutError``
        when the backlog did not shrink for ``stall_s``."""
        loop = asyncio.get_running_loop()
        stats = self.gateway.buffer.stats
        best, since = self.backlog, loop.time()
        last, quiet_since = stats.committed, loop.time()
        while True:
            now = loop.time()
            if stats.committed != last:
                last, quiet_since = stats.committed, now
            if self.backlog == 0 and now - quiet_since >= quiet_s:
                return
            if self.backlog < best:
                best, since = self.backlog, now
            elif self.backlog > 0 and now - since > stall_s:
                raise TimeoutError(f"gateway: {self.backlog} samples not delivered; "
                                   f"no progress for {stall_s:.0f} s")
            await asyncio.sleep(0.05)
