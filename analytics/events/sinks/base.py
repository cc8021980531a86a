"""The sink seam: where events go (ingest, MQTT, webhooks). One module per sink; only the MQTT
sink imports the MQTT client, only the HTTP sinks import httpx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from zhizao.events import Event


class Sink(Protocol):
    """Delivers events. An async context manager (connections opened on enter).

    ``send`` delivers every event or raises ``zhizao.errors.Unavailable`` (retry later) /
    ``zhizao.errors.Rejected`` (permanent); it never drops silently."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, events: Sequence[Event]) -> None: ...


def event_json(e: Event) -> dict[str, object]:
    """The JSON object of an event (RFC 3339 timestamps)."""
    out: dict[str, object] = e.model_dump(mode="json")
    return out
