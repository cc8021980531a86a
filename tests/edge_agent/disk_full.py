"""A real buffer whose database has no room left, without root: SQLite's own "database or disk is
full" (SQLITE_FULL) on every commit that needs space, and room again on demand.

:func:`fill` caps the database at the pages it has (``PRAGMA max_page_count``) and fills what is
free in them with filler samples (asset :data:`FILLER`) — and, for the gateway, filler records
(producer ``zz-filler``) — until a commit of one more fails; :func:`free` lifts the cap. The
filler stays in the buffer: :func:`samples` and :func:`record_samples` read what is committed,
without the filler and without taking anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from edge_agent.buffer import EncodedBatch, SqliteBuffer
from edge_agent.buffer.codec import SampleDecoder
from zhizao import wire
from zhizao.model import AssetPath, Batch, Quality, Sample

FILLER = AssetPath("zz-filler", "a", "l", "m")
_T = TypeVar("_T")


def _filler(i: int) -> Sample:
    return Sample(FILLER, "x", datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=i), float(i), None,
                  Quality.GOOD)


async def _on_buffer_thread(buf: SqliteBuffer, op: Callable[[], _T]) -> _T:
    """``op`` on the buffer's own SQLite thread (its connection is used from there only)."""
    return await asyncio.get_running_loop().run_in_executor(buf._exec, op)


async def fill(buf: SqliteBuffer, *, records: bool = False) -> None:
    """No room left in ``buf``'s database (see the module docstring)."""
    db = buf._db
    assert db is not None

    def cap() -> None:
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages}")

    await _on_buffer_thread(buf, cap)
    n = 0
    for size in (200, 20, 1):
        while True:
            try:
                await buf.put([_filler(n + k) for k in range(size)])
            except Exception:
                break
            n += size
    for size in (50, 5, 1) if records else ():
        while True:
            batch = Batch("zz-filler", f"f{n}", n, tuple(_filler(n + k) for k in range(size)))
            try:
                await buf.put_records([EncodedBatch.of_batch(batch)])
            except Exception:
                break
            n += size


async def free(buf: SqliteBuffer) -> None:
    """Room again (the cap lifted)."""
    db = buf._db
    assert db is not None
    await _on_buffer_thread(buf, lambda: db.conn.execute("PRAGMA max_page_count = 2147483646").fetchone())


def samples(buf: SqliteBuffer) -> list[Sample]:
    """The samples committed in ``buf``'s sample rows, filler aside (read, not taken)."""
    assert buf._db is not None
    dec = SampleDecoder()
    got = [dec.decode(r[0]) for r in buf._db.conn.execute("SELECT data FROM samples ORDER BY id").fetchall()]
    return [s for s in got if s.asset != FILLER]


def record_samples(buf: SqliteBuffer) -> list[Sample]:
    """The samples of the records committed in ``buf``, filler aside (read, not taken)."""
    assert buf._db is not None
    rows = buf._db.conn.execute(
        "SELECT data FROM records WHERE producer != 'zz-filler' ORDER BY id").fetchall()
    return [s for r in rows for s in wire.decode_batch(r[0]).samples]
