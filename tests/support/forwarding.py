"""Running a forwarder in a test until its buffer is delivered; a never-used uplink; the OPC UA
connector's clients, captured."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from edge_agent.buffer import SqliteBuffer
from edge_agent.connectors.opcua.connector import OpcUaConnector
from edge_agent.forwarder import Forwarder
from tests.support.waiting import eventually
from zhizao.model import Batch


class NoUplink:
    """An uplink that is never used (for a forwarder whose counters alone are read)."""

    name = "none"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def send(self, batch: Batch) -> None:
        raise AssertionError("not used")


def capture_clients(conn: OpcUaConnector) -> list[Any]:
    """Every asyncua client ``conn`` creates from now on, appended as created (a test can end the
    newest one's session with ``clients[-1].connection_lost_callback(...)``)."""
    clients: list[Any] = []
    make_client = conn._client

    async def capture() -> Any:
        client = await make_client()
        clients.append(client)
        return client

    conn._client = capture  # type: ignore[method-assign]
    return clients


async def drain(fwd: Forwarder, buf: SqliteBuffer, seconds: float = 30.0) -> None:
    """Run ``fwd`` until ``buf`` is empty (``seconds`` at most, else ``AssertionError``), then stop it."""
    task = asyncio.create_task(fwd.run())
    try:
        await eventually(lambda: buf.stats.backlog_samples == 0, seconds, "the buffer drained")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
