"""InfluxDB's partial write of a field type conflict: exactly which points it did not store.

InfluxDB keeps the type of each field of a measurement **per shard** — per shard group, i.e. per
time range of the retention policy (7 days by default): the first point writing a field into a
shard fixes its type there, and a later point carrying that field with another type is dropped
whole (all its fields) while the write's other points are stored. influxd 1.x answers ``400
partial write: field type conflict: input field "F" on measurement "M" is type T1, already exists
as type T2 dropped=N`` (releases after 1.8 append `` for database: D for retention policy: R``;
2.x: 422, JSON ``message`` ``failure writing points to database: partial write: ...``, the same
words: :func:`field_conflict` reads all three). zhizao writes each field with one type
(:data:`~ingest.storage.influxdb.lineproto.FIELD_TYPES`), so a conflict means another client wrote
one of its fields with another type in that time range.

What that answer says, and what it does not (influxd's ``tsdb/shard.go``
``validateSeriesAndFields`` and ``coordinator/points_writer.go`` ``WritePointsPrivileged``;
checked against influxd 1.6.7 in ``tests/ingest/test_influx_type_conflicts.py``):

* ``N`` counts dropped points, one per point however many of its fields conflict;
* the reason names the first conflict only — other fields (other points) may conflict too;
* within one write the first point creating a field fixes its type, later points of the write
  with another type conflict (zhizao's own points never do: one type per field);
* a write spanning shard groups is written shard by shard and answered with **one shard's
  error**: what the other shards dropped is not reported at all, nor are points beyond the
  retention policy, nor lines influxd could not parse, when a shard reports a conflict.

So neither the field named nor ``N`` tells which points of a write were dropped: "the points
carrying the named field, when they are ``N``" is wrong for a write whose other points were
dropped in another shard (measured: a write holding a ``value`` conflict in one week and a
``value_str`` conflict in the next is answered ``value_str ... dropped=1`` having dropped three).

What is provable instead — two answers tell the fate of *every* point of a write:

* **204**: every point of the write is stored;
* a partial write with **N = the number of points written**: none is stored (``N`` counts the
  points one shard dropped, so every point went to that shard and was dropped);

and one property: **a point's fate is the same each time it is written** — a shard's field types
never change once created, so a point dropped for a conflict is dropped again and a point stored
is stored again (identical points overwrite themselves; barring a concurrent ``DROP``).

:func:`settle` writes parts of the refused write again until every point is covered by one of
those two answers (or by a ``points beyond retention policy`` answer, read exactly by
:func:`~ingest.storage.influxdb.partial.split_dropped`). A conflict on field F splits a part into
its points carrying F and the others, each written again; a part whose points all carry F and
that was not dropped whole (F conflicts in one shard group, not in another) is split in halves —
ordered by kind of point and time, so the halves follow shard group boundaries. Any other answer
(a line influxd could not parse, a field or type zhizao does not write, a count that does not fit)
or more than the :class:`Budget` of writes: ``None`` — the caller refuses the batches as before
(422), never guesses. Cost: none when every point carries F and all are dropped; two writes for
one conflicting field (its points, then the others), two more per further field; about two per
halving level for each shard group boundary inside a part. When two points of the write share
series and time (the later replaces the earlier in InfluxDB), the stored ones among them are
written once more at the end in their order, so the parts' order cannot change which one wins.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ingest.storage.base import DataRefused
from ingest.storage.influxdb.lineproto import FIELD_TYPES
from ingest.storage.influxdb.partial import BeyondRetention, partial_write, split_dropped

_CONFLICT: Final = re.compile(r'field type conflict: input field "(.+?)" on measurement "(.+)" '
                              r"is type (\w+), already exists as type (\w+)", re.DOTALL)
"""The reason of a partial write (:func:`~ingest.storage.influxdb.partial.partial_write`) of a
field type conflict."""

Write = Callable[[bytes], Awaitable[None]]
"""Writes a body of lines; returns on 204, raises what :meth:`InfluxStore._post_write` raises."""


class FieldConflict(DataRefused):
    """InfluxDB's partial write of a field type conflict (module docstring): it stored the write
    but ``dropped`` points, one shard's count; ``field`` of ``measurement`` is ``existing`` there,
    the write sent it as ``sent``. A :class:`DataRefused` for callers that write no samples."""

    def __init__(self, reason: str, *, field: str, measurement: str, sent: str, existing: str,
                 dropped: int) -> None:
        super().__init__(reason)
        self.field, self.measurement, self.sent, self.existing = field, measurement, sent, existing
        self.dropped = dropped

    @property
    def sample_reason(self) -> str:
        """The rejection reason of a sample dropped for this conflict."""
        return (f'type: not stored — field "{self.field}" of "{self.measurement}" is {self.existing} in '
                f"InfluxDB for this time, this sample's is {self.sent} (InfluxDB field type conflict); the "
                "batch's other samples were stored")


def field_conflict(message: str, status: int) -> FieldConflict | None:
    """A :class:`FieldConflict` when ``message`` (InfluxDB's whole error, answered with ``status``)
    is a partial write of a field type conflict, else ``None``: influxd 1.x's error, with or without
    the database and retention policy later releases append, and 2.x's (after ``failure writing
    points to database:``; :func:`~ingest.storage.influxdb.partial.partial_write`)."""
    partial = partial_write(message)
    found = None if partial is None else _CONFLICT.fullmatch(partial[0])
    if partial is None or found is None:
        return None
    field, measurement, sent, existing = found.groups()
    return FieldConflict(f"InfluxDB refused the data ({status}): {message[:300]}", field=field,
                         measurement=measurement, sent=sent, existing=existing, dropped=partial[1])


class Budget:
    """The writes :func:`settle` may still make for one refused write (and the parts it is split
    into, which share it)."""

    __slots__ = ("writes",)

    def __init__(self, writes: int) -> None:
        self.writes = writes

    def take(self) -> bool:
        if self.writes <= 0:
            return False
        self.writes -= 1
        return True


@dataclass(frozen=True, slots=True)
class Points:
    """The points of a write, by position in it: each line (with its newline), time (µs), fields
    (:func:`~ingest.storage.influxdb.lineproto.point_fields`) and whether another point of the
    write has the same series and time."""

    lines: Sequence[bytes]
    ts_us: Sequence[int]
    fields: Sequence[tuple[str, ...]]
    shared: Sequence[bool]


async def settle(points: Points, answer: DataRefused, write: Write, measurement: str,
                 budget: Budget) -> dict[int, str] | None:
    """``{position: reason}`` of every point InfluxDB did not store of the write of ``points``
    answered ``answer`` (a :class:`FieldConflict` or a ``BeyondRetention``), proven by writing
    parts of it again with ``write`` (module docstring); the others are stored. ``None`` when that
    cannot be proven within ``budget``. ``StoreUnavailable`` from a write is raised (nothing is
    proven, and resending the batches writes the same points again)."""
    dropped: dict[int, str] = {}
    fields = points.fields

    async def part(idx: list[int], answer: DataRefused | None) -> bool:
        """Settle the points ``idx`` (ordered by kind and time), whose write answered ``answer``
        (``None``: not written yet). False when not provable."""
        if answer is None:
            if not budget.take():
                return False
            try:
                await write(b"".join([points.lines[i] for i in sorted(idx)]))  # in the write's order
            except (BeyondRetention, FieldConflict) as exc:
                answer = exc
            except DataRefused:
                return False
            else:
                return True
        if isinstance(answer, BeyondRetention):
            split = split_dropped([[points.ts_us[i] for i in idx]], answer.dropped)
            if split is None:
                return False
            dropped.update((idx[pos], reason) for pos, reason in split[0])
            return True
        if (not isinstance(answer, FieldConflict) or answer.measurement != measurement
                or FIELD_TYPES.get(answer.field) != answer.sent or not 0 < answer.dropped <= len(idx)):
            return False
        carrying = [i for i in idx if answer.field in fields[i]]
        if not carrying:
            return False
        if len(carrying) < len(idx):
            others = [i for i in idx if answer.field not in fields[i]]
            return await part(carrying, None) and await part(others, None)
        if answer.dropped == len(idx):
            dropped.update(dict.fromkeys(idx, answer.sample_reason))
            return True
        half = len(idx) // 2  # F conflicts for some of these points only: another shard group
        return half > 0 and await part(idx[:half], None) and await part(idx[half:], None)

    before = budget.writes
    order = sorted(range(len(points.lines)), key=lambda i: (fields[i], points.ts_us[i]))
    if not await part(order, answer):
        return None
    again = [points.lines[i] for i in range(len(points.lines)) if points.shared[i] and i not in dropped]
    if again and budget.writes < before:  # parts were written in another order than the batch's
        if not budget.take():
            return None
        try:
            await write(b"".join(again))
        except DataRefused:
            return None
    return dropped
