"""InfluxDB store over the v1-compatible HTTP API: line protocol on ``/write``, InfluxQL on ``/query``.

Works with InfluxDB 1.8+ (and the 1.6 used in tests), 2.x (token auth, DBRP mapping of
``database``/``retention_policy`` to a bucket) and 3.x. Schema: see ``ingest/storage/README.md``.

Dedup: a batch id is recorded (measurement ``zhizao_batches``) only after InfluxDB answered 204
for its samples, and kept in memory for fast lookups (reloaded at start for the dedup window).
A crash between the 204 and the record means at worst a resend whose points overwrite
identical points (same series and timestamp) — InfluxDB writes are idempotent — so nothing is
ever stored twice. Records are flushed in the background every 0.2 s and on close.

Refusals: InfluxDB answers 400 when it cannot take the data itself (a line it cannot parse) —
permanent, unlike an outage: :class:`~ingest.storage.base.DataRefused`, never ``StoreUnavailable``.
A refused group write is split until the batch at fault is alone (see :meth:`InfluxStore._deliver`),
so one producer's bad data never fails the others' batches.

Field type conflicts: a 400 ``partial write: field type conflict ... dropped=N`` stored the write's
other points, but names one conflict of one shard group only. Which points were dropped is proven
by writing parts of the write again (:mod:`ingest.storage.influxdb.conflicts`); each batch is
answered like a partial write beyond retention (below). Only what cannot be proven is a refusal.
Those re-writes never put an older sample back over a newer one this store wrote meanwhile
(:meth:`InfluxStore._deliver`, :meth:`InfluxStore._restore`); across replicas they can (README).

Partial writes beyond retention: a 400 ``partial write: points beyond retention policy
dropped=N`` is no refusal — InfluxDB stored every other point. Which N it dropped follows from
its rule (:mod:`ingest.storage.influxdb.partial`): each batch of the write is answered with the
samples it stored and, in ``WriteResult.dropped``, those it did not; the dedup record keeps both.

Samples outside InfluxDB's time range (1677-09-21 .. 2262-04-11; a valid batch may carry years
1-9999) are never sent: InfluxDB would skip their lines, store the rest and answer 400 — which
ingest would have had to read as the whole batch refused although most of it was stored. They
are reported in ``WriteResult.dropped`` like the points beyond retention, the rest stored.

Credentials: a token as ``Authorization: Token`` (2.x/3.x), a username/password (1.x) as HTTP
Basic auth — never in the URL, which libraries log (httpx logs every request line at INFO).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import ssl
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self

import httpx
import orjson

from ingest.settings import InfluxSettings
from ingest.storage.base import (
    BatchKey,
    CatalogueEntry,
    DataRefused,
    EventQuery,
    LatestValue,
    SampleFrame,
    Series,
    SeriesQuery,
    WriteResult,
    decode_value,
    from_us,
    series_order,
    to_us,
)
from ingest.storage.events_common import event_matches
from ingest.storage.influxdb.conflicts import Budget, FieldConflict, Points, field_conflict, settle
from ingest.storage.influxdb.http1 import WritePool, tls_context
from ingest.storage.influxdb.lineproto import (
    LineCache,
    field_str,
    frame_lines,
    point_fields,
    point_lines,
    tag_value,
)
from ingest.storage.influxdb.partial import (
    BeyondRetention,
    Dropped,
    beyond_retention,
    decode_dropped,
    encode_dropped,
    split_dropped,
    storable,
)
from ingest.storage.influxdb.query import (
    TAGS,
    aggregate_rows,
    parse_series,
    prefix_condition,
    quote,
    series_condition,
    series_sql,
    units_sql,
)
from zhizao.errors import ConfigError, StoreUnavailable
from zhizao.events import Event
from zhizao.model import LEVELS, Quality

log = logging.getLogger(__name__)
_CAPACITY_LIMITS: Final = ("max-series-per-database limit exceeded", "max-values-per-tag limit exceeded")
"""InfluxDB 1.x's own capacity limits (``[data]`` in influxdb.conf): answered 400 like bad data, but
the same batch can be stored once the limit is raised or series are dropped — a store problem
(503, the agent keeps the batch), not the batch's (422, the agent dead-letters it)."""
_CAPACITY_LOG_S = 60.0
BATCHES = "zhizao_batches"
EVENTS = "zhizao_events"


@dataclass(slots=True)
class _Item:
    """One queued write: its line protocol, the frame it was built from (one point per sample, in
    line order), its batch key, and the future answered once InfluxDB answered for it. ``kept``: the
    positions in the batch's frame of those points when samples InfluxDB cannot store were taken out
    of it (``outside``, each with its reason; :func:`~ingest.storage.influxdb.partial.storable`)."""

    body: bytes
    frame: SampleFrame
    key: BatchKey | None
    future: asyncio.Future[WriteResult]
    kept: list[int] | None = None
    outside: Dropped = ()

    @property
    def ts_us(self) -> list[int]:
        """The timestamps of its points (µs), in line order."""
        return self.frame.ts_us

    @property
    def points(self) -> int:
        return len(self.frame)

    def in_frame(self, dropped: Dropped) -> Dropped:
        """``dropped`` (positions among the points written) as positions in the batch's frame, with
        the samples taken out before writing: everything the batch had not stored, in position order."""
        if self.kept is None:
            return dropped
        kept = self.kept
        return tuple(sorted([*self.outside, *((kept[pos], reason) for pos, reason in dropped)]))


@dataclass(slots=True)
class _Flight:
    """A group write :meth:`InfluxStore._kick` sent, ``seq`` counting them in the order sent (the
    order its batches were received); ``done`` once each batch of it is answered."""

    seq: int
    group: list[_Item]
    done: bool = False


_MAX_IN_FLIGHT = 2
_GROUP_POINTS = 5_000
"""InfluxDB's documented optimal write size ("Optimize writes": 5,000 lines)."""
_REFUSED: Final = frozenset({400, 422})
"""``/write`` answers refusing the data itself, never to be retried: 400 (1.x and 2.x: unparseable
line, field type conflict), 422 (2.x) — except partial writes, which stored the other points: of
points beyond the retention policy (400 in 1.x, 422 in 2.x; :class:`BeyondRetention`) and of a field
type conflict (:class:`~ingest.storage.influxdb.conflicts.FieldConflict`)."""
_SETTLE_WRITES = 32
"""Writes a refused group write may take to prove which of its points InfluxDB did not store
(:func:`~ingest.storage.influxdb.conflicts.settle`), shared by the parts it is split into."""


class InfluxStore:
    """The InfluxDB backend. One ``httpx.AsyncClient``; use within one event loop."""

    name = "influxdb"

    def __init__(self, settings: InfluxSettings, *, dedup_window: timedelta = timedelta(days=7),
                 dedup_max: int = 1_000_000) -> None:
        self.settings = settings
        self.measurement = settings.measurement
        self._client: httpx.AsyncClient | None = None
        self._writes: WritePool | None = None
        """``POST /write`` (the hot path) bypasses httpx: see :mod:`ingest.storage.influxdb.http1`."""
        try:
            self._lines = LineCache(settings.measurement)
        except ValueError as exc:
            raise ConfigError("storage.influxdb", [("measurement", str(exc))]) from None
        self._seen: OrderedDict[BatchKey, tuple[int, int, Dropped]] = OrderedDict()
        """key -> (accepted, recorded at µs since the epoch, dropped), oldest first."""
        self._loaded = False
        self._marks: list[str] = []
        self._last_mark_ns = 0
        self._dedup_window = dedup_window
        self._dedup_max = dedup_max
        self._flusher: asyncio.Task[None] | None = None
        self._queue: deque[_Item] = deque()
        self._in_flight = 0
        self._queued_points = 0
        self._sent = 0
        self._flights: dict[int, _Flight] = {}
        """Group writes sent, by ``seq``, kept while one sent before them is not done (:meth:`_send`):
        those a re-write of the earlier one may have overwritten (:meth:`_restore`)."""
        self._holds = 0
        """Group writes being answered after a refusal or partial write, which may write their
        points again: while any is, :meth:`_kick` sends nothing (:meth:`_deliver`)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[BatchKey, asyncio.Future[WriteResult]] = {}
        self._capacity_logged = -_CAPACITY_LOG_S
        self._conflict_logged = -_CAPACITY_LOG_S

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        s = self.settings
        headers = _auth_headers(s)
        self._params: dict[str, str] = {"db": s.database}
        if s.retention_policy:
            self._params["rp"] = s.retention_policy
        try:
            tls = tls_context(verify=s.verify_tls, ca_file=s.ca_file)
        except (OSError, ssl.SSLError) as exc:
            problem = ("ca_file", f"cannot load {s.ca_file!r}: {exc}")
            raise ConfigError("storage.influxdb", [problem]) from None
        self._client = httpx.AsyncClient(
            base_url=s.url, headers=headers, verify=tls, timeout=s.timeout_s,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
        self._writes = WritePool(s.url, headers=headers, tls=tls, timeout_s=s.timeout_s)
        try:
            await self._load_dedup()
        except StoreUnavailable as exc:
            log.warning("InfluxDB unreachable at start, dedup records not loaded yet: %s", exc)
        self._flusher = asyncio.create_task(self._flush_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Finish queued writes, flush dedup records (best effort), close the client. Idempotent."""
        if self._client is None:
            return
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(StoreUnavailable):
            await self._flush_marks()
        await self._client.aclose()
        self._client = None
        if self._writes is not None:
            await self._writes.aclose()
            self._writes = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise StoreUnavailable("InfluxDB store is not open")
        return self._client

    # ---- HTTP -------------------------------------------------------------------------------

    async def _post_write(self, body: bytes) -> None:
        if self._writes is None:
            raise StoreUnavailable("InfluxDB store is not open")
        status, answer = await self._writes.post("/write", {**self._params, "precision": "u"}, body)
        if status == 204:
            return
        text = answer[:300].decode("utf-8", "replace")
        if status in _REFUSED:
            message = answer.decode("utf-8", "replace")  # read whole: the partial write parsers anchor
            with contextlib.suppress(orjson.JSONDecodeError):
                doc = orjson.loads(answer)  # 1.x: {"error": ...}; 2.x: {"code": ..., "message": ...}
                said = doc.get("error", doc.get("message")) if isinstance(doc, dict) else None
                if isinstance(said, str):
                    message = said
                    text = message[:300]
            limit = next((lim for lim in _CAPACITY_LIMITS if lim in text), None)
            if limit is not None:
                now = time.monotonic()
                if now - self._capacity_logged >= _CAPACITY_LOG_S:
                    self._capacity_logged = now
                    log.error("InfluxDB refuses new data: %s (%s); raise the limit in influxdb.conf "
                              "[data] or drop unused series — batches are answered 503 and kept by "
                              "their senders until then", limit, text)
                raise StoreUnavailable(f"InfluxDB is at a capacity limit ({limit}): {text}")
            conflict = field_conflict(message, status)
            if conflict is not None:
                raise conflict
            dropped = beyond_retention(message)
            if dropped is not None:
                raise BeyondRetention(f"InfluxDB stored the write but dropped {dropped} points ({status}): "
                                      f"{text}", dropped)
            raise DataRefused(f"InfluxDB refused the data ({status}): {text}")
        raise StoreUnavailable(f"InfluxDB write answered {status}: {text}")

    async def influxql(self, q: str, *, write: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``series`` of the first statement (``[]`` when empty)."""
        return (await self.influxql_all(q, write=write))[0]

    async def influxql_all(self, q: str, *, write: bool = False) -> list[list[dict[str, Any]]]:
        """Run InfluxQL (one or more statements); the ``series`` of each statement, in order."""
        params = {**self._params, "epoch": "u"}
        params.pop("rp", None)
        try:  # q in the body for POST; credentials in a header (see __aenter__), never in the URL
            resp = await self.client.post("/query", params=params, data={"q": q}) if write else \
                await self.client.get("/query", params={**params, "q": q})
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB query failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise StoreUnavailable(f"InfluxDB query answered {resp.status_code}: {resp.text[:300]}")
        doc = orjson.loads(resp.content)
        results = doc.get("results") or [{}]
        out: list[list[dict[str, Any]]] = []
        for result in results:
            if "error" in result:
                if "database not found" in result["error"]:
                    return [[] for _ in results]
                raise StoreUnavailable(f"InfluxDB query error: {result['error']}")
            out.append(result.get("series", []))
        return out

    async def ping(self) -> None:
        """``/ping`` answers, and an empty write is not refused for credentials (401/403)."""
        try:
            resp = await self.client.get("/ping")
            if resp.status_code != 204:
                raise StoreUnavailable(f"InfluxDB /ping answered {resp.status_code}")
            resp = await self.client.post("/write", params={**self._params, "precision": "u"}, content=b"")
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB unreachable: {type(exc).__name__}: {exc}") from exc
        if resp.status_code in (401, 403):
            raise StoreUnavailable(f"InfluxDB refuses the configured credentials ({resp.status_code}): "
                                   f"{resp.text[:200]}")

    # ---- writes and dedup -------------------------------------------------------------------

    async def _load_dedup(self) -> None:
        window = self._dedup_window // timedelta(microseconds=1)
        rows = await self.influxql(
            f'SELECT "batch_id", "accepted", "dropped" FROM "{BATCHES}" WHERE time > now() - {window}u '
            'GROUP BY "producer"')
        for s in rows:
            producer = s["tags"]["producer"]
            for t_us, batch_id, accepted, dropped in sorted(s["values"], key=lambda row: int(row[0])):
                key = BatchKey(producer, batch_id)
                self._remember(key, int(accepted), int(t_us), decode_dropped(dropped))
        self._loaded = True

    def _remember(self, key: BatchKey, accepted: int, t_us: int, dropped: Dropped = ()) -> None:
        self._seen[key] = (accepted, t_us, dropped)
        while len(self._seen) > self._dedup_max:
            self._seen.popitem(last=False)

    async def seen(self, key: BatchKey) -> WriteResult | None:
        if not self._loaded:
            await self._load_dedup()
        entry = self._seen.get(key)
        return None if entry is None else WriteResult(entry[0], duplicate=True, dropped=entry[2])

    async def write(self, frame: SampleFrame, key: BatchKey | None = None) -> WriteResult:
        """Queue ``frame`` for the next group write; returns after InfluxDB answered 204 for it.

        Group write: bodies queued while up to ``_MAX_IN_FLIGHT`` writes are pending go out
        together in one ``/write`` of at most ``_GROUP_POINTS`` points (InfluxDB ingests larger
        writes more cheaply, up to about that size). A group that could not be written (InfluxDB
        down or slow) fails every batch in it with ``StoreUnavailable`` (nothing acknowledged); one
        whose data InfluxDB refused is split (:meth:`_deliver`): only the batch at fault gets
        :class:`DataRefused`, the others are stored. One of whose points InfluxDB dropped beyond its
        retention policy answers each batch with what it stored and what it dropped.

        Samples InfluxDB cannot store (a time outside 1677-09-21 .. 2262-04-11) are taken out before
        the frame is queued, never sent: the frame's other samples are written and acknowledged,
        those are answered in ``WriteResult.dropped`` (and kept in the dedup record) with
        :data:`~ingest.storage.influxdb.partial.RANGE_REASON`.
        """
        if key is not None:
            prev = await self.seen(key)
            if prev is not None:
                return prev
            running = self._inflight.get(key)
            if running is not None:  # the same batch is being written right now
                result = await asyncio.shield(running)
                return WriteResult(result.accepted, duplicate=True, dropped=result.dropped)
        if not len(frame):
            if key is not None:
                self._record(key, 0)
            return WriteResult(0)
        frame, kept, outside = storable(frame)  # never send InfluxDB a point it cannot store
        if not len(frame):
            if key is not None:
                self._record(key, 0, outside)
            return WriteResult(0, dropped=outside)
        try:
            lines = frame_lines(frame, self._lines)
        except ValueError as exc:  # names are validated before; this is the last line of defence
            raise DataRefused(f"cannot be written as InfluxDB line protocol: {exc}") from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WriteResult] = loop.create_future()
        future.add_done_callback(_retrieved)  # its waiter may have given up (timeout) meanwhile
        if key is not None:
            self._inflight[key] = future  # until answered (_deliver): a resend joins it
        self._queue.append(_Item(lines, frame, key, future, kept, outside))
        self._queued_points += len(frame)
        self._kick()
        return await asyncio.shield(future)  # a waiter that gives up leaves the write to finish

    def _kick(self) -> None:
        """Send what is queued: at once when no write is pending; while one is, only full groups
        (the rest waits for its answer, so writes stay large when ingest is busy — influxd spends
        ~10% less CPU per point on 5,000-point writes than on 1,000-point ones)."""
        while self._queue and not self._holds and (self._in_flight == 0 or (
                self._in_flight < _MAX_IN_FLIGHT and self._queued_points >= _GROUP_POINTS)):
            group: list[_Item] = []
            points = 0
            while self._queue and (not group or points + self._queue[0].points <= _GROUP_POINTS):
                item = self._queue.popleft()
                group.append(item)
                points += item.points
            self._queued_points -= points
            self._in_flight += 1
            self._sent += 1
            flight = self._flights[self._sent] = _Flight(self._sent, group)
            task = asyncio.get_running_loop().create_task(self._send(flight))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, flight: _Flight) -> None:
        try:
            await self._deliver(flight.group, flight=flight)
        finally:
            flight.done = True
            flights = self._flights
            while flights and flights[first := next(iter(flights))].done:  # none before it can re-write
                del flights[first]
            self._in_flight -= 1
            self._kick()

    async def _deliver(self, group: list[_Item], budget: Budget | None = None,
                       flight: _Flight | None = None) -> None:
        """Write ``group`` in one request and answer each of its waiters.

        When InfluxDB refuses the data (400: one batch's point it cannot parse), the refusal is one
        batch's, not the group's: the group is split in halves, written concurrently, recursively,
        until each refused batch is alone — it gets the :class:`DataRefused`, every other batch is
        stored (about 2·log2(n) extra writes for one bad batch among n, never a retry of the whole
        group). Re-writing points InfluxDB already took from a partial write is harmless:
        identical points overwrite themselves.

        When InfluxDB stored the write but dropped some of its points, each batch is answered with
        the samples it stored and, in ``WriteResult.dropped``, those InfluxDB did not: beyond its
        retention policy, nothing is written again (its rule tells which,
        :func:`~ingest.storage.influxdb.partial.split_dropped`); for a field type conflict, parts
        of the write are written again until which is proven
        (:func:`~ingest.storage.influxdb.conflicts.settle`, at most ``_SETTLE_WRITES`` writes for
        the group and the parts it may be split into: ``budget``). Only what cannot be proven is
        taken as a refusal, as above.

        Writing again never reverts a later write of the same series and time (the newer sample
        replaces the older, ``ingest/README.md``): while ``flight`` (the group sent, ``None`` for
        the parts it is split into) is answered after a refusal or partial write, nothing else is
        sent (``_holds``; batches received meanwhile are written after), and then the points of
        the group writes sent after it that share a series and time with it are written again
        (:meth:`_restore`). Across ingest replicas this cannot be ensured (README).
        """
        try:
            await self._post_write(b"".join([item.body for item in group]))  # each ends with a newline
        except DataRefused as exc:
            refusal = exc
        except Exception as exc:  # noqa: BLE001 - every waiter must get an answer, never hang
            self._failed(group, exc)
            return
        else:
            for item in group:
                self._stored(item, ())
            return
        if flight is None:
            await self._answer(group, refusal, budget)
            return
        self._holds += 1
        try:
            await self._answer(group, refusal, budget)
            await self._restore(flight)
        finally:
            self._holds -= 1
            self._kick()

    async def _answer(self, group: list[_Item], refusal: DataRefused, budget: Budget | None) -> None:
        """Answer ``group``, whose write InfluxDB answered ``refusal`` (:meth:`_deliver`)."""
        if not isinstance(refusal, BeyondRetention | FieldConflict):
            await self._refused(group, refusal, budget)
            return
        partial = refusal
        budget = Budget(_SETTLE_WRITES) if budget is None else budget
        try:
            split = await self._partial(group, partial, budget)
        except Exception as exc:  # noqa: BLE001 - as above (InfluxDB down while telling which)
            self._failed(group, exc)
            return
        if split is None:
            await self._refused(group, partial, budget)
            return
        for item, dropped in zip(group, split, strict=True):
            self._stored(item, dropped)

    async def _restore(self, flight: _Flight) -> None:
        """Write again, in the order sent, the points of the group writes sent after ``flight`` that
        share a series and time with one of its points — after ``flight``'s group was answered,
        which may have written its points again over theirs (:meth:`_deliver`); those still in
        flight write the same points. Nothing is sent meanwhile (``_holds``), so these are the
        newest of this store at their series and time. What InfluxDB drops of them it drops again
        (a point's fate is the same each time it is written); an outage is logged: those series
        may then keep the older sample at that time."""
        later = [f for seq, f in self._flights.items() if seq > flight.seq]
        if not later:
            return
        mine = {key for item in flight.group for key in _point_keys(item.frame)}
        lines = [line for f in later for item in f.group for key, line in
                 zip(_point_keys(item.frame), point_lines(item.frame, self._lines), strict=True)
                 if key in mine]
        if not lines:
            return
        try:
            await self._post_write(b"".join(lines))
        except DataRefused:
            pass  # stored as they were stored (and answered) before
        except Exception as exc:  # noqa: BLE001 - the batches are answered: log only
            log.warning("InfluxDB: %d points written after a refused or partial write could not be "
                        "written again after it (%s): their series may keep the older sample at "
                        "their time", len(lines), exc)

    async def _partial(self, group: list[_Item], exc: BeyondRetention | FieldConflict,
                       budget: Budget) -> list[Dropped] | None:
        """Per batch of ``group``, the points (positions among those written) InfluxDB did not
        store of its write answered ``exc``; ``None`` when that cannot be proven (logged)."""
        points = sum(item.points for item in group)
        if isinstance(exc, BeyondRetention):
            split = split_dropped([item.ts_us for item in group], exc.dropped)
            if split is None:
                log.warning("InfluxDB dropped %d points of a write of %d, which are not its oldest: "
                            "taken as a refusal (%s)", exc.dropped, points, exc.reason)
            else:
                log.info("InfluxDB dropped %d points of a write of %d batches beyond its retention policy: "
                         "reported as rejected samples of their batches", exc.dropped, len(group))
            return split
        frames = [item.frame for item in group]
        keys = [key for f in frames for key in _point_keys(f)]
        counts = Counter(keys)
        lines = [line for f in frames for line in point_lines(f, self._lines)]
        fields = [point_fields(vt, unit) for f in frames for vt, unit in zip(f.vtype, f.unit, strict=True)]
        left = budget.writes
        found = await settle(Points(lines, [ts for _, _, ts in keys], fields, [counts[k] > 1 for k in keys]),
                             exc, self._post_write, self.measurement, budget)
        if found is None:
            log.warning("InfluxDB dropped points of a write of %d for a field type conflict, and which "
                        "could not be proven (%d writes): taken as a refusal (%s)", points,
                        left - budget.writes, exc.reason)
            return None
        self._log_conflict(exc, len(found), points, left - budget.writes)
        owner = [(n, pos) for n, item in enumerate(group) for pos in range(item.points)]
        out: list[list[tuple[int, str]]] = [[] for _ in group]
        for i, reason in sorted(found.items()):
            n, pos = owner[i]
            out[n].append((pos, reason))
        return [tuple(d) for d in out]

    def _log_conflict(self, exc: FieldConflict, dropped: int, points: int, writes: int) -> None:
        """One WARNING per ``_CAPACITY_LOG_S`` about field type conflicts (they last: every write
        into that time range meets them), INFO in between."""
        now = time.monotonic()
        warn = now - self._conflict_logged >= _CAPACITY_LOG_S
        if warn:
            self._conflict_logged = now
        log.log(logging.WARNING if warn else logging.INFO,
                "InfluxDB dropped %d points of a write of %d for field type conflicts (first: field %r of "
                "%r is %s there, written as %s): reported as rejected samples of their batches (%d writes "
                "to tell which)", dropped, points, exc.field, exc.measurement, exc.existing, exc.sent, writes)

    def _failed(self, group: list[_Item], exc: BaseException) -> None:
        for item in group:
            self._answered(item.key, item.future)
            if not item.future.done():
                item.future.set_exception(exc)

    async def _refused(self, group: list[_Item], exc: DataRefused, budget: Budget | None) -> None:
        """Answer ``group``, whose write InfluxDB refused with ``exc``: split it (:meth:`_deliver`,
        the halves sharing ``budget``) or, when it is one batch, fail that batch with ``exc``."""
        if len(group) > 1:
            half = len(group) // 2
            log.info("InfluxDB refused a write of %d batches (%s); writing them apart", len(group), exc)
            await asyncio.gather(self._deliver(group[:half], budget), self._deliver(group[half:], budget))
            return
        key, fut = group[0].key, group[0].future
        log.warning("InfluxDB refused batch %s: %s", "(no key)" if key is None else
                    f"{key.producer}/{key.batch_id}", exc.reason)
        self._answered(key, fut)
        if not fut.done():
            fut.set_exception(exc)

    def _stored(self, item: _Item, dropped: Dropped) -> None:
        """Answer ``item``: InfluxDB stored its points but ``dropped`` (positions among them); recorded
        for dedup with the samples taken out before writing, as positions in the batch's frame."""
        accepted = item.points - len(dropped)
        dropped = item.in_frame(dropped)
        if item.key is not None:
            self._record(item.key, accepted, dropped)
        self._answered(item.key, item.future)
        if not item.future.done():
            item.future.set_result(WriteResult(accepted, dropped=dropped))

    def _answered(self, key: BatchKey | None, fut: asyncio.Future[WriteResult]) -> None:
        """``key``'s write is answered: a later send of it no longer joins this one."""
        if key is not None and self._inflight.get(key) is fut:
            del self._inflight[key]

    def _record(self, key: BatchKey, accepted: int, dropped: Dropped = ()) -> None:
        """Remember ``key`` (after its 204) and queue its persistent dedup record (with the
        positions and reasons of the samples InfluxDB dropped, if any: a resend is answered alike)."""
        now = max(time.time_ns() // 1000, self._last_mark_ns + 1)
        self._last_mark_ns = now
        self._remember(key, accepted, now, dropped)
        try:
            producer = tag_value(key.producer)
        except ValueError as exc:  # producer ids are validated before: never expected
            log.error("dedup record of %r kept in memory only: %s", key, exc)
            return
        extra = f",dropped={field_str(encode_dropped(dropped))}" if dropped else ""
        self._marks.append(f"{BATCHES},producer={producer} batch_id={field_str(key.batch_id)},"
                           f"accepted={accepted}i{extra} {now}")

    async def _flush_marks(self) -> None:
        if not self._marks:
            return
        marks, self._marks = self._marks, []
        try:
            await self._post_write("\n".join(marks).encode())
        except StoreUnavailable:
            self._marks = marks + self._marks
            raise
        except DataRefused as exc:  # one record refused: write them one by one, drop only that one
            log.warning("InfluxDB refused %d dedup records (%s); writing them one by one", len(marks), exc)
            for i, mark in enumerate(marks):
                try:
                    await self._post_write(mark.encode())
                except DataRefused as one:
                    log.error("dedup record dropped (kept in memory only): %s: %s", mark[:200], one.reason)
                except StoreUnavailable:
                    self._marks = marks[i:] + self._marks
                    raise

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                await self._flush_marks()
            except StoreUnavailable as exc:
                log.warning("dedup records not yet written (kept in memory, retrying): %s", exc)

    async def delete_before(self, cutoff: datetime) -> None:
        cutoff_ns = to_us(cutoff) * 1000
        await self.influxql(f'DELETE FROM "{self.measurement}" WHERE time < {cutoff_ns}', write=True)

    async def prune_dedup(self, max_age: timedelta, max_entries: int) -> None:
        cutoff_us = to_us(datetime.now(UTC) - max_age)
        await self.influxql(f'DELETE FROM "{BATCHES}" WHERE time < {cutoff_us * 1000}', write=True)
        seen = self._seen
        while seen and (len(seen) > max_entries or next(iter(seen.values()))[1] < cutoff_us):
            seen.popitem(last=False)

    # ---- reads ------------------------------------------------------------------------------

    async def query(self, q: SeriesQuery) -> list[Series]:
        if not q.by_unit:
            out = [parse_series(s, q.agg) for s in await self.influxql(series_sql(q, self.measurement))]
        else:
            out = await self._query_by_unit(q)
        out = [s for s in out if len(s)]
        out.sort(key=series_order)
        return out

    async def _query_by_unit(self, q: SeriesQuery) -> list[Series]:
        """``q`` with one series per unit. The unit is a field, not a tag (bounded cardinality,
        ``storage/README.md``), so InfluxDB cannot group by it: the query runs as without
        ``by_unit``, beside a statement telling the units of each series; a series holding one
        unit (or none) is answered from it, one holding several (rare) is queried again per unit
        (``"unit" = '...'``) — its points without a unit, which no condition selects, are read raw
        and split here (:func:`aggregate_rows` for bucketed queries)."""
        merged, told = await asyncio.gather(
            self.influxql(series_sql(q, self.measurement)), self.influxql_all(units_sql(q, self.measurement)))
        counts, distinct = [*told, [], []][:2]
        units: dict[tuple[str, ...], tuple[list[str], bool]] = {}
        for s in distinct:
            units[tuple(s["tags"][t] for t in TAGS)] = ([str(r[1]) for r in s["values"]], False)
        for s in counts:
            key = tuple(s["tags"][t] for t in TAGS)
            _, n, with_unit = s["values"][0]
            units[key] = (units.get(key, ([], False))[0], (with_unit or 0) < n)
        out: list[Series] = []
        for s in merged:
            tags = s["tags"]
            named, unitless = units.get(tuple(tags[t] for t in TAGS), ([], False))
            if len(named) + unitless <= 1:
                out.append(parse_series(s, q.agg))
                continue
            one = f"time >= {q.start_us * 1000} AND time < {q.end_us * 1000} AND {series_condition(tags)}"
            for unit in named:
                where = f'{one} AND "unit" = {quote(unit)}'
                for part in await self.influxql(series_sql(q, self.measurement, where=where)):
                    out.append(parse_series(part, q.agg))
            if unitless:
                out.append(await self._unitless(q, tags))
        return out

    async def _unitless(self, q: SeriesQuery, tags: dict[str, str], page: int = 100_000) -> Series:
        """The points without a unit of the series ``tags`` name, answering ``q``: read raw in pages
        of ``page`` points (every point of the series in the range, until ``q.limit`` unitless ones
        for a raw query), the others skipped."""
        columns = ["time", "value", "value_str", "vtype", "unit", "quality"]
        fields = ", ".join(f'"{c}"' for c in columns[1:])
        rows: list[list[Any]] = []
        start_ns = q.start_us * 1000
        while True:
            got = await self.influxql(
                f'SELECT {fields} FROM "{self.measurement}" WHERE time >= {start_ns} AND '
                f"time < {q.end_us * 1000} AND {series_condition(tags)} ORDER BY time ASC LIMIT {page}")
            values: list[list[Any]] = got[0]["values"] if got else []
            unit = got[0]["columns"].index("unit") if got else 0
            rows += [r for r in values if r[unit] is None]
            if len(values) < page or (q.agg is None and len(rows) >= q.limit):
                break
            start_ns = (values[-1][0] + 1) * 1000  # InfluxDB keeps one point per series and time
        if q.agg is None:
            return parse_series({"tags": tags, "columns": columns, "values": rows[:q.limit]}, None)
        return parse_series({"tags": tags, "columns": columns[:5],
                             "values": aggregate_rows(rows, q.agg, q.bucket_us(), q.limit)}, q.agg)

    async def _last_rows(self, where: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        rows = await self.influxql(
            f'SELECT "value", "value_str", "vtype", "unit", "quality" FROM "{self.measurement}" {where} '
            f'GROUP BY {", ".join(f"{chr(34)}{t}{chr(34)}" for t in TAGS)} ORDER BY time DESC LIMIT 1')
        out = []
        for s in rows:
            if s.get("values"):
                out.append((s["tags"], dict(zip(s["columns"], s["values"][0], strict=True))))
        return out

    async def latest(self, asset: str) -> list[LatestValue]:
        out = []
        for tags, row in await self._last_rows(f"WHERE {prefix_condition(asset)}"):
            value = decode_value(row.get("vtype") or "f", row.get("value"), row.get("value_str"))
            if value is not None:
                out.append(LatestValue(tags["signal"], from_us(row["time"]), value, row.get("unit"),
                                       Quality(row.get("quality") or "good")))
        return sorted(out, key=lambda v: v.signal)

    async def catalogue(self, prefix: str | None = None) -> list[CatalogueEntry]:
        where = f"WHERE {prefix_condition(prefix)}" if prefix else ""
        out = [CatalogueEntry("/".join(tags[level] for level in LEVELS), tags["signal"], row.get("unit"),
                              row.get("vtype") or "f", from_us(row["time"]))
               for tags, row in await self._last_rows(where)]
        return sorted(out, key=lambda e: (e.asset, e.signal))

    # ---- events -----------------------------------------------------------------------------

    async def upsert_events(self, events: Sequence[Event]) -> None:
        """One point per event: series key (source, asset, rule, event_id), time = start, so two
        events differing only in ``id`` never overwrite each other and an update of an id (same
        source, asset, rule, start) replaces its point. ``end_us`` (µs; ``_OPEN_END`` while the
        event has no end) lets :meth:`query_events` select overlapping episodes in InfluxDB."""
        if not events:
            return
        lines = []
        now = time.time_ns()
        for n, e in enumerate(events):
            end_us = _OPEN_END if e.end is None else to_us(e.end)
            try:  # the Event model refuses what line protocol cannot carry; this is the last defence
                tags = (f"source={tag_value(e.source.value)},asset={tag_value(e.asset)},"
                        f"rule={tag_value(e.rule)},event_id={tag_value(e.id)}")
            except ValueError as exc:
                raise DataRefused(f"event {n} ({e.id[:80]!r}) cannot be written as InfluxDB line "
                                  f"protocol: {exc}") from None
            lines.append(
                f"{EVENTS},{tags} "
                f"id={field_str(e.id)},state={field_str(e.state.value)},doc={field_str(e.model_dump_json())},"
                f"end_us={end_us}i,updated={now}i {to_us(e.start)}")
        await self._post_write("\n".join(lines).encode())

    async def query_events(self, q: EventQuery) -> list[Event]:
        """Only episodes overlapping ``[q.start, q.end)`` leave InfluxDB: started before ``q.end``
        (``time``) and ending at or after ``q.start`` or still open (``end_us``). Points written
        before the ``event_id`` tag existed (no ``end_us`` either) are always read, and for their
        ids any newer tagged version is looked up, so an old open point never shadows its update."""
        cond = []
        if q.end is not None:
            cond.append(f"time < {to_us(q.end) * 1000}")
        if q.start is not None:
            cond.append(f'("end_us" >= {to_us(q.start)} OR "event_id" = \'\')')
        if q.source is not None:
            cond.append(f'"source" = {quote(q.source.value)}')
        where = f"WHERE {' AND '.join(cond)}" if cond else ""
        rows = await self.influxql(f'SELECT "doc", "updated" FROM "{EVENTS}" {where} GROUP BY "event_id"')
        best: dict[str, tuple[int, Event]] = {}
        legacy: set[str] = set()

        def take(series: list[dict[str, Any]]) -> None:
            for s in series:
                untagged = not (s.get("tags") or {}).get("event_id")
                for _t, doc, updated in s["values"]:
                    e = Event.model_validate_json(doc)
                    if untagged:
                        legacy.add(e.id)
                    if e.id not in best or best[e.id][0] <= updated:
                        best[e.id] = (updated, e)

        take(rows)
        if legacy:  # a legacy point's id may have been updated since, as a tagged point
            for chunk in _chunks(sorted(legacy), 200):
                ids = " OR ".join(f'"event_id" = {quote(i)}' for i in chunk)
                take(await self.influxql(f'SELECT "doc", "updated" FROM "{EVENTS}" WHERE {ids} '
                                         'GROUP BY "event_id"'))
        events = [e for _, e in best.values() if event_matches(e, q)]
        events.sort(key=lambda e: (-to_us(e.start), e.id))
        return events[: q.limit]


def _auth_headers(s: InfluxSettings) -> dict[str, str]:
    """The ``Authorization`` header of every request: ``Token`` (2.x/3.x) when a token is set, else
    HTTP Basic for a username (1.x; the v1 API of 2.x/3.x too) — never ``u``/``p`` in the URL."""
    if s.token:
        return {"Authorization": f"Token {s.token}"}
    if s.username is not None:
        pair = base64.b64encode(f"{s.username}:{s.password or ''}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    return {}


_OPEN_END = 2**63 - 1
"""``end_us`` of an event without an end (int64 max): every ``end_us >= start`` holds."""


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def _point_keys(frame: SampleFrame) -> list[tuple[str, str, int]]:
    """The series (asset, signal) and time (µs) of each point of ``frame``: what InfluxDB keeps one
    point of."""
    return list(zip(frame.asset, frame.signal, frame.ts_us, strict=True))


def _retrieved(fut: asyncio.Future[WriteResult]) -> None:
    """Mark a write's outcome as seen (its waiter may have timed out: no 'never retrieved' noise)."""
    if not fut.cancelled():
        fut.exception()
