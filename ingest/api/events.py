"""``GET/POST /api/v1/events``: KPI alerts and anomaly episodes (upsert by id)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Discriminator, Tag

from ingest.api.deps import CanRead, CanWrite, StoreDep
from ingest.problems import Problem
from ingest.storage.base import EventQuery
from zhizao.events import Event, EventSource, EventState
from zhizao.model import check_asset_prefix

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventsResponse(BaseModel):
    events: list[Event]


class UpsertResult(BaseModel):
    upserted: int


def _shape(body: Any) -> str | None:
    """Which alternative a body is, by its JSON shape: an array is a list of events, an object
    one event. Errors then name only that alternative (``body.list.0.asset``, ``body.event.asset``), not
    every member of the union."""
    if isinstance(body, list):
        return "list"
    if isinstance(body, dict | Event):
        return "event"
    return None


EventsBody = Annotated[
    Annotated[list[Event], Tag("list")] | Annotated[Event, Tag("event")],
    Discriminator(_shape, custom_error_type="events_body",
                  custom_error_message="expected one event (a JSON object) or a list of events (an array)"),
]


@router.get("/events", response_model=EventsResponse)
async def get_events(
    *, store: StoreDep, _auth: CanRead,
    asset: Annotated[str | None, Query(description="asset or scope prefix")] = None,
    start: Annotated[datetime | None, Query(description="events still open at or after this")] = None,
    end: Annotated[datetime | None, Query(description="events started before this")] = None,
    state: EventState | None = None,
    source: EventSource | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> EventsResponse:
    """Events under ``asset`` overlapping ``[start, end)``, newest first."""
    for name, ts in (("start", start), ("end", end)):
        if ts is not None and ts.tzinfo is None:
            raise Problem(422, f"{name}: timestamp has no UTC offset; append 'Z' for UTC", reason="bad_query")
    if asset:
        try:
            check_asset_prefix(asset)
        except ValueError as exc:
            raise Problem(422, f"asset: {exc}", reason="bad_query") from None
    events = await store.query_events(EventQuery(asset=asset or None, start=start, end=end, state=state,
                                                 source=source, limit=limit))
    return EventsResponse(events=events)


@router.post("/events", response_model=UpsertResult)
async def post_events(store: StoreDep, _auth: CanWrite,
                      events: Annotated[EventsBody, Body()]) -> UpsertResult:
    """Insert or replace one event or a list of events by ``id`` (open, update, resolve)."""
    items = events if isinstance(events, list) else [events]
    await store.upsert_events(items)
    return UpsertResult(upserted=len(items))
