"""Which events a write token may post (``POST /api/v1/events``): producer bindings for events.

Batches name their producer and a token may write only as the producers it is bound to
(:mod:`ingest.auth`). An event names no producer: its ``source`` (``kpi``, ``anomaly``,
``system``) says which kind of service emitted it, and ``auth.event_producers`` names the
producers of each source (:class:`~ingest.settings.EventProducers`; by default ``anomaly`` is the
scoring service's ``zhizao-scoring``, ``kpi`` the KPI alerter's ``zhizao-kpi``). A token that is
bound (neither a forwarder nor from before bindings) may post an event only when

* it may write as one of the producers of the event's ``source`` (its own name or a
  ``--producer``: :meth:`~ingest.auth.TokenRecord.may_write_as_any`), and
* the event's ``id`` begins with ``<source>:`` — as every episode id of analytics does
  (``anomaly:<rule>:<asset>:<start>``). Events are upserted by id: without this, a token allowed
  one source could overwrite or resolve another source's episodes by reusing their ids.

A forwarder token and an unbound token (from before bindings; ingest warns about each at start)
may post any event, as they may write any producer's batches; with auth disabled nothing is
checked. A request with one event the token may not post is refused whole (403, nothing stored),
before the store is touched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ingest.auth import TokenRecord
from ingest.problems import Problem
from ingest.settings import EventProducers
from zhizao.events import Event

log = logging.getLogger(__name__)


def refusal(writer: TokenRecord | None, events: Sequence[Event], emitters: EventProducers, *,
            single: bool) -> Problem | None:
    """The 403 refusing ``events`` posted with ``writer``'s token (``None``: auth disabled), or
    ``None`` when the token may post every one of them (see the module's contract).

    The problem names the first event refused by its field as 422s do (``body.event.source`` for
    a ``single`` event, ``body.list.<index>.source`` or ``....id`` in a list) in its detail and in
    ``field``, and the token's binding in its detail and in ``binding``. Logged as a WARNING."""
    if writer is None or writer.forwarder or writer.producers is None:
        return None
    for index, event in enumerate(events):
        source = event.source.value
        where = "body.event" if single else f"body.list.{index}"
        producers = emitters.of(event.source)
        if not writer.may_write_as_any(producers):
            field = f"{where}.source"
            allowed = (f"producer {', '.join(producers)} (auth.event_producers.{source} in ingest's "
                       f"config): create the emitting service's token with --producer {producers[0]}"
                       if producers else f"no producer (auth.event_producers.{source} is empty): "
                       "only a forwarder token")
            detail = (f"token {writer.id} ({writer.name}) may not post events of source {source!r} "
                      f"({field}); it writes as: {writer.binding()}. Events of source {source!r} "
                      f"are posted by tokens that may write as {allowed}. Nothing was stored")
            return _refuse(writer, field, detail, "event_source_not_allowed")
        if not event.id.startswith(f"{source}:"):
            field = f"{where}.id"
            detail = (f"token {writer.id} ({writer.name}) may not post event id {event.id!r} ({field}): "
                      f"the id of an event of source {source!r} must begin with {source + ':'!r}, so "
                      f"that no source's emitter can overwrite another's events (upserted by id); it "
                      f"writes as: {writer.binding()}. Nothing was stored")
            return _refuse(writer, field, detail, "event_id_not_allowed")
    return None


def _refuse(writer: TokenRecord, field: str, detail: str, reason: str) -> Problem:
    log.warning("token %s (%s) refused on POST /api/v1/events: %s (it writes as: %s)",
                writer.id, writer.name, field, writer.binding())
    return Problem(403, detail, reason=reason, field=field, binding=writer.binding())
