"""``GET/POST /api/v1/events``: KPI alerts and anomaly episodes (upsert by id)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ingest.api.deps import CanRead, CanWrite, StoreDep
from ingest.problems import Problem
from ingest.storage.base import EventQuery, check_asset_prefix
from zhizao.events import Event, EventSource, EventState

router = APIRouter(prefix="/api/v1", tags=["events"])


class EventsResponse(BaseModel):
    events: list[Event]


class UpsertResult(BaseModel):
    upserted: int


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
            raise Problem(422, str(exc), reason="bad_query") from None
    events = await store.query_events(EventQuery(asset=asset or None, start=start, end=end, state=state,
                                                 source=source, limit=limit))
    return EventsResponse(events=events)


@router.post("/events", response_model=UpsertResult)
async def post_events(store: StoreDep, _auth: CanWrite, events: list[Event] | Event) -> UpsertResult:
    """Insert or replace one event or a list of events by ``id`` (open, update, resolve)."""
    items = events if isinstance(events, list) else [events]
    await store.upsert_events(items)
    return UpsertResult(upserted=len(items))
