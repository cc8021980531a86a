"""``GET/POST /api/v1/events``: KPI alerts and anomaly episodes (upsert by id)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from ingest.api.body import read_body
from ingest.api.deps import CanRead, CanWrite, ServiceDep, StoreDep
from ingest.api.times import NAIVE_HINT, QueryTime
from ingest.eventbinding import refusal
from ingest.problems import PROBLEM_JSON, Problem
from ingest.storage.base import EventQuery
from zhizao.errors import TooLarge, WireFormatError
from zhizao.events import Event, EventSource, EventState
from zhizao.model import check_asset_prefix
from zhizao.wire import decompress

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
_EVENTS_BODY: TypeAdapter[list[Event] | Event] = TypeAdapter(EventsBody)
_BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [{"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
              {"$ref": "#/components/schemas/Event"}], "title": "Events"}}}}}
_JSON = ("application/json", "")
_POST_ERRORS: dict[int | str, dict[str, Any]] = {403: {
    "description": "Token lacks the write scope, or may not post an event's source or id "
                   "(ingest/eventbinding.py)",
    "content": {PROBLEM_JSON: {}}}}


@router.get("/events", response_model=EventsResponse)
async def get_events(
    *, store: StoreDep, _auth: CanRead,
    asset: Annotated[str | None, Query(description="asset or scope prefix")] = None,
    start: Annotated[QueryTime | None, Query(description="events still open at or after this")] = None,
    end: Annotated[QueryTime | None, Query(description="events started before this")] = None,
    state: EventState | None = None,
    source: EventSource | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> EventsResponse:
    """Events under ``asset`` overlapping ``[start, end)``, newest first."""
    for name, ts in (("start", start), ("end", end)):
        if ts is not None and ts.tzinfo is None:
            raise Problem(422, f"{name}: {NAIVE_HINT}", reason="bad_query")
    if asset:
        try:
            check_asset_prefix(asset)
        except ValueError as exc:
            raise Problem(422, f"asset: {exc}", reason="bad_query") from None
    events = await store.query_events(EventQuery(asset=asset or None, start=start, end=end, state=state,
                                                 source=source, limit=limit))
    return EventsResponse(events=events)


@router.post("/events", response_model=UpsertResult, openapi_extra=_BODY_SCHEMA, responses=_POST_ERRORS)
async def post_events(request: Request, service: ServiceDep, store: StoreDep,
                      writer: CanWrite) -> UpsertResult:
    """Insert or replace one event or a list of events by ``id`` (open, update, resolve).

    A bound write token may post only events of the sources it is bound to, with ids beginning
    ``<source>:`` (:mod:`ingest.eventbinding`); else 403 naming the field and the token's binding,
    nothing stored — checked once the body is valid, before the store.

    The body (JSON, ``Content-Encoding: gzip`` optional) is read up to ``limits.max_body_bytes``
    (413 beyond, also after inflating) — never whole into memory first, as a declared body
    parameter would be; an invalid event answers 422 naming its field (``body.event.<field>``,
    ``body.list.<index>.<field>``).
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _JSON and not ctype.endswith("+json"):
        raise service.refuse(Problem(415, f"Content-Type {ctype!r} is not supported; send application/json",
                                     reason="bad_content_type"))
    limit = service.settings.limits.max_body_bytes
    body = await read_body(request, service)
    try:
        body = decompress(body, max_bytes=limit)
    except WireFormatError as exc:
        too_large = isinstance(exc, TooLarge)
        raise service.refuse(Problem(413, f"{exc}; the limit is {limit} bytes", reason="body_too_large",
                                     limit=limit) if too_large else
                             Problem(400, f"invalid body: {exc}", reason="bad_encoding")) from None
    try:
        events = _EVENTS_BODY.validate_json(body)
    except ValidationError as exc:  # answered as FastAPI answers a body parameter's errors
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    items = events if isinstance(events, list) else [events]
    problem = refusal(writer, items, service.settings.auth.event_producers,
                      single=not isinstance(events, list))
    if problem is not None:
        raise service.refuse(problem)
    await store.upsert_events(items)
    return UpsertResult(upserted=len(items))
