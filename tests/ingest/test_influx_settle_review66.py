"""helper-66's review of the field type conflict settle (``ingest/storage/influxdb/conflicts.py``):
the partial-write answers of newer influxd releases, and the settle's re-writes against a later
write of the same point.

Message forms, as servers answer them (quoted in public issue threads):

* influxd 1.x up to 1.8: ``{"error": "partial write: field type conflict: input field \\"channel\\" on
  measurement \\"uap_vaps\\" is type float, already exists as type integer dropped=12"}``
  (github.com/unpoller/unpoller/issues/156, 2019);
* later 1.x releases append the database and retention policy: ``{"error": "partial write: field
  type conflict: input field \\"temp_cpu\\" on measurement \\"usg\\" is type integer, already exists as
  type float dropped=1 for database: unpoller for retention policy: autogen"}``
  (github.com/unpoller/unpoller/issues/949, 2026);
* influxd 2.x (v2.7.11) answers 422 ``{"code": "unprocessable entity", "message": "failure writing
  points to database: partial write: field type conflict: input field \\"value\\" on measurement
  \\"navigation...\\" is type string, already exists as type float dropped=11"}``
  (github.com/tkurki/signalk-to-influxdb2/issues/84, also #18); early 2.0 said ``unexpected error
  writing points to database: partial write: points beyond retention policy dropped=1`` in
  ``message`` (github.com/dojot/dojot/issues/2216).

Before the fix the store read only ``doc["error"]`` and fullmatched the 1.8 form: both newer forms
were refusals (422 for batches influxd had partly stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import orjson
import pytest

from ingest.settings import InfluxSettings
from ingest.storage.base import BatchKey, DataRefused, SampleFrame
from ingest.storage.influxdb.conflicts import FieldConflict, field_conflict
from ingest.storage.influxdb.partial import BeyondRetention, beyond_retention
from ingest.storage.influxdb.store import InfluxStore
from tests.ingest.conftest import M1, T0
from tests.ingest.helpers import prime, us
from tests.support.servers import InfluxDB
from zhizao.model import Sample

CONFLICT = ('partial write: field type conflict: input field "value_str" on measurement "telemetry" is '
            'type string, already exists as type float dropped=5')
NEWER_1X = f"{CONFLICT} for database: zhizao for retention policy: autogen"
V2_MESSAGE = f"failure writing points to database: {CONFLICT}"


def _influx(server: InfluxDB) -> InfluxStore:
    return InfluxStore(InfluxSettings(url=server.url, database=server.database))


# ---- message forms ---------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [CONFLICT, NEWER_1X, V2_MESSAGE, f"{CONFLICT}\n"])
def test_newer_influxd_1x_conflict_answer_is_read(message: str) -> None:
    """influxd after 1.8 appends `` for database: D for retention policy: R`` (unpoller#949)."""
    found = field_conflict(message, 400)
    assert found is not None
    assert (found.field, found.measurement, found.sent, found.existing, found.dropped) == (
        "value_str", "telemetry", "string", "float", 5)


def test_influxd_2x_conflict_answer_is_read() -> None:
    """ingest/storage/influxdb/README.md: "2.x's 422 with the same words is read alike" — its words
    follow ``failure writing points to database:`` (signalk-to-influxdb2#84, v2.7.11)."""
    found = field_conflict(V2_MESSAGE, 422)
    assert found is not None and found.dropped == 5 and found.field == "value_str"


@pytest.mark.parametrize("message", [
    f'unable to parse \'telemetry,a=b value_str="{CONFLICT}" 1\': bad timestamp',
    f"{CONFLICT} and more", "partial write: field type conflict dropped=1"])
def test_a_conflict_is_read_only_as_the_whole_error(message: str) -> None:
    """Anchored: the words quoted inside another error (a line influxd could not parse echoes its
    text) are not a partial write."""
    assert field_conflict(message, 400) is None


@pytest.mark.parametrize(("message", "dropped"), [
    ("partial write: points beyond retention policy dropped=3", 3),
    ("partial write: points beyond retention policy dropped=3 for database: zhizao for retention "
     "policy: autogen", 3),
    ("failure writing points to database: partial write: points beyond retention policy dropped=2", 2),
    ("unexpected error writing points to database: partial write: points beyond retention policy "
     "dropped=1", 1),
    ("unable to parse 'telemetry,a=b value_str=\"partial write: points beyond retention policy dropped=9\" "
     "x': bad timestamp", None),
    (CONFLICT, None)])
def test_retention_answer_forms(message: str, dropped: int | None) -> None:
    assert beyond_retention(message) == dropped


class _Answers:
    """A stand-in for the store's write pool answering every ``/write`` with ``status`` and ``body``."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    async def post(self, path: str, params: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return self.status, self.body


@pytest.mark.parametrize(("status", "doc", "kind"), [
    (422, {"code": "unprocessable entity", "message": V2_MESSAGE}, FieldConflict),
    (400, {"error": NEWER_1X}, FieldConflict),
    (422, {"code": "unprocessable entity", "message": "failure writing points to database: partial "
           "write: points beyond retention policy dropped=2"}, BeyondRetention),
    (422, {"code": "unprocessable entity", "message": "unable to parse 'x': bad timestamp"}, DataRefused)])
async def test_the_store_reads_2x_json_message(status: int, doc: dict[str, str],
                                               kind: type[DataRefused]) -> None:
    """2.x puts its error under ``message`` (1.x under ``error``): both are read."""
    store = InfluxStore(InfluxSettings(url="http://127.0.0.1:9", database="zhizao"))
    store._params = {"db": "zhizao"}
    store._writes = _Answers(status, orjson.dumps(doc))  # type: ignore[assignment]
    with pytest.raises(DataRefused) as raised:
        await store._post_write(b"x")
    assert type(raised.value) is kind
    assert "{" not in raised.value.reason  # the message, not the JSON document


# ---- the settle's re-writes vs a later write of the same point -------------------------------------

AT = T0 + timedelta(seconds=1)
A = [Sample(M1, "state", T0, "RUN", None), Sample(M1, "power_kw", AT, 1.0, "kW")]
"""Batch A: a string sample meeting the primed ``value_str`` conflict (dropped), power_kw@AT = 1.0
(stored): its write is answered with the conflict and settled by writing parts of it again."""
B = [Sample(M1, "power_kw", AT, 2.0, "kW"),
     *(Sample(M1, "filler", T0 + timedelta(milliseconds=k), float(k), None) for k in range(4_999))]
"""Batch B, received after A: power_kw@AT = 2.0, the newer sample, which replaces the older
(ingest/README.md). 5,000 points: a full group, sent while A's write is pending (``_kick``)."""


def _power_at(server: InfluxDB) -> list[float]:
    doc = orjson.loads(server.query(f"SELECT \"value\" FROM \"telemetry\" WHERE \"signal\" = 'power_kw' AND "
                                    f"time = {us(AT) * 1000}", db=server.database))
    return [row[1] for row in doc["results"][0]["series"][0]["values"]]


Post = Callable[[bytes], Awaitable[None]]


async def _race(server: InfluxDB, posts: Callable[[Post], tuple[Post, asyncio.Event]]) -> None:
    """Write A, then B once the ``asyncio.Event`` of ``posts`` (which wraps the store's writes) is set;
    B is acknowledged whole, A without its string sample; InfluxDB keeps B's power_kw at AT."""
    prime(server, "value_str", "1.5", T0)
    async with _influx(server) as store:
        post, go = posts(store._post_write)
        store._post_write = post  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(store.write(SampleFrame.from_samples(A), BatchKey("agent-1", "a")))
        await go.wait()
        rb = await store.write(SampleFrame.from_samples(B), BatchKey("agent-1", "b"))
        assert rb.accepted == len(B) and not rb.dropped
        ra = await task
        assert [p for p, _ in ra.dropped] == [0], ra
    assert _power_at(server) == [2.0]


async def test_settle_never_reverts_a_later_acknowledged_write(influxdb: InfluxDB) -> None:
    """B is received once A's write was answered (partly stored), while its conflict is settled
    (each re-write a slow round trip): B is written after the settle's re-writes, not between
    them. Failed before the fix (B sent at once, stored, then A's re-write put 1.0 back)."""
    def posts(real: Post) -> tuple[Post, asyncio.Event]:
        answered = asyncio.Event()
        calls = 0

        async def post(body: bytes) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # A's write
                try:
                    return await real(body)
                finally:
                    answered.set()
            await asyncio.sleep(0.2)
            return await real(body)

        return post, answered

    await _race(influxdb, posts)


async def test_a_write_in_flight_when_the_settle_begins_keeps_its_value(influxdb: InfluxDB) -> None:
    """B is received (and stored, 204) while A's write is pending: influxd stored A's 1.0, then B's
    2.0, then answers A's conflict — whose settle writes A's 1.0 again. B's point sharing a series
    and time with A is written again after the settle. Failed before the fix (1.0 kept)."""
    def posts(real: Post) -> tuple[Post, asyncio.Event]:
        stored, b_done = asyncio.Event(), asyncio.Event()
        calls = 0

        async def post(body: bytes) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # A's write: stored, answered after B's
                try:
                    await real(body)
                finally:
                    stored.set()
                    await b_done.wait()
            elif calls == 2:  # B's write
                try:
                    await real(body)
                finally:
                    b_done.set()
            else:
                await real(body)

        return post, stored

    await _race(influxdb, posts)

