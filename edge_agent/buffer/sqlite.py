"""The SQLite schema and statements behind :class:`~edge_agent.buffer.store.SqliteBuffer`.

Schema: ``samples(id, created, data)`` holds encoded rows in arrival order; ``batches(seq,
batch_id, lo, hi, created)`` records each formed batch as the id range ``lo..hi`` of its rows;
``meta`` holds the next seq, ``batched_upto`` (rows above it are not in a batch yet), the nonce
drawn when the database was created (kept, unused since batch ids take the nonce of each open),
``clock_shift`` (see :meth:`Db.note_clock_step`) and ``clock_ref``, the clocks read at the last
commit or close (:class:`~edge_agent.buffer.clock.ClockReading`; a buffer written before it existed
has none, see :meth:`Db.clock_record`).
``records(id, created, producer, batch_id, seq, n, data)`` holds whole pre-encoded batches (one
wire-format document each, with its own identity and ``n`` samples; the site gateway stores an
agent's batch so): they are taken and deleted one by one, by id, never cut into buffer batches.

Batch ids are ``<nonce>-<seq>`` with a nonce drawn at EVERY open: a buffer restored from a
snapshot or backup (or copied to another box) brings back an old ``next_seq``, and ids formed
from it must not be ids the receiver already stored (it would discard the new samples as
duplicates). A batch keeps the id it was formed with (stored in ``batches``), so a resend after a
restart is still deduplicated.

Every method runs on the buffer's single worker thread. Counters (rows, bytes) are kept in
memory, initialised at open; a failed transaction (also a failed COMMIT, e.g. disk full)
restores them exactly, and :meth:`Db.resync` recounts them should they ever disagree with the
tables. Row ids use AUTOINCREMENT, so they are never reused even when the table empties:
``batched_upto`` stays meaningful across restarts.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zhizao.errors import ZhizaoError

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"


class BufferCorrupt(ZhizaoError):
    """The buffer database failed its integrity check or is not a database."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY, batch_id TEXT NOT NULL UNIQUE, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, producer TEXT NOT NULL,
    batch_id TEXT NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL);
"""

RecordRow = tuple[int, str, str, int, int, bytes]
"""``(id, producer, batch_id, seq, n, data)`` of one stored record."""

ClockShift = tuple[float, int, int]
"""``(seconds, last sample id, last record id)``: see :meth:`Db.note_clock_step`."""

_Counters = tuple[int, int, int, int, int, int, int, int, float | None, ClockShift | None]


def open_db(path: Path, synchronous: str, nonce: str) -> Db:
    """Open or create the buffer at ``path``; ``BufferCorrupt`` if it is damaged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise BufferCorrupt(f"cannot switch {path} to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)]:
            conn.close()
            raise BufferCorrupt(f"integrity check of {path} failed: {check[:3]}")
        conn.executescript(_SCHEMA)
        db = Db(conn, nonce)
    except sqlite3.DatabaseError as exc:
        raise BufferCorrupt(f"{path}: {exc}") from exc
    return db


class Db:
    """Statements of the buffer (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, nonce: str) -> None:
        """``nonce``: fresh for each open; the ids of batches formed from now on take it."""
        self.conn = conn
        self.next_seq = self.batched_upto = self.count_total = self.bytes_total = self.batched_count = 0
        self.rec_count = self.rec_samples = self.rec_bytes = 0
        self.oldest_created_cached: float | None = None
        self.clock_shift: ClockShift | None = None
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if "nonce" not in meta:
            meta = {"nonce": nonce, "next_seq": "1", "batched_upto": "0", "schema": SCHEMA_VERSION}
            with self.transaction():
                conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        self.nonce = nonce
        self.next_seq = int(meta["next_seq"])
        self.batched_upto = int(meta["batched_upto"])
        if "clock_shift" in meta:
            secs, upto_s, upto_r = meta["clock_shift"].split()
            self.clock_shift = (float(secs), int(upto_s), int(upto_r))
        self._recount()

    def _recount(self) -> None:
        """Set the counters from the tables (at open, and by :meth:`resync`)."""
        conn = self.conn
        self.count_total, self.bytes_total = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM samples"
        ).fetchone()
        self.batched_count = conn.execute(
            "SELECT COUNT(*) FROM samples WHERE id <= ?", (self.batched_upto,)
        ).fetchone()[0]
        self.rec_count, self.rec_samples, self.rec_bytes = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(length(data)), 0) FROM records"
        ).fetchone()
        self._refresh_oldest()

    def resync(self, why: str) -> None:
        """The counters disagreed with the tables (``why``): recount them from the tables (the
        truth) and say so. Never expected; a guard, so that a wrong count never turns into a
        crash or a drop of real data."""
        before = self._counters()
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        self.next_seq = int(meta["next_seq"])
        self.batched_upto = int(meta["batched_upto"])
        self._recount()
        log.error("buffer counters disagreed with the database (%s); recounted: rows %d -> %d, "
                  "bytes %d -> %d, not yet batched %d -> %d", why, before[2], self.count_total,
                  before[3], self.bytes_total, before[2] - before[4], self.unbatched_count())

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One SQLite transaction. If anything in it fails — a statement or the COMMIT itself
        (disk full: SQLite then may have rolled back already) — it is rolled back, and the
        counters kept in memory beside the tables are restored exactly (they must keep
        describing what is stored), and the failure is raised."""
        saved = self._counters()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback(saved)
            raise

    def _rollback(self, saved: _Counters) -> None:
        if self.conn.in_transaction:  # SQLITE_FULL/IOERR may have rolled it back already
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # nothing of the transaction was committed either way
                log.error("buffer: ROLLBACK after a failed transaction failed too: %s", exc)
        (self.next_seq, self.batched_upto, self.count_total, self.bytes_total, self.batched_count,
         self.rec_count, self.rec_samples, self.rec_bytes, self.oldest_created_cached,
         self.clock_shift) = saved

    def _counters(self) -> _Counters:
        return (self.next_seq, self.batched_upto, self.count_total, self.bytes_total, self.batched_count,
                self.rec_count, self.rec_samples, self.rec_bytes, self.oldest_created_cached,
                self.clock_shift)

    def _refresh_oldest(self) -> None:
        found: list[float] = []
        for table, upto in (("samples", 1), ("records", 2)):
            row = self.conn.execute(f"SELECT id, created FROM {table} ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                shift = self.clock_shift
                found.append(float(row[1]) + (shift[0] if shift and row[0] <= shift[upto] else 0.0))
        self.oldest_created_cached = min(found) if found else None

    # -- wall clock steps ------------------------------------------------------------------
    def note_clock_step(self, seconds: float) -> None:
        """Inside a transaction: the wall clock just jumped ``seconds`` ahead (positive: an NTP
        step after booting with a wrong clock) or back (negative: a clock set back). The rows
        stored so far were stamped by the clock before the jump: from now on their age
        (``max_age_s``, the backlog age) counts ``seconds`` less (more, when negative), until
        they are all gone. Persisted (``meta.clock_shift``), so a restart keeps it.

        One correction covers every row up to the newest, so a second jump while rows of the
        first remain is combined so that no row is ever aged beyond its true age: the new total
        is ``seconds`` plus the earlier correction when that was positive (the rows stored
        between the two jumps are kept longer by it), else ``seconds`` alone (the rows of the
        first jump are kept longer by it). Never dropped early."""
        upto_s = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM samples").fetchone()[0]
        upto_r = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0]
        if not (upto_s or upto_r):
            return
        total = seconds + max(self.clock_shift[0] if self.clock_shift else 0.0, 0.0)
        self.clock_shift = (total, int(upto_s), int(upto_r))
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('clock_shift', ?)",
                          (f"{total!r} {upto_s} {upto_r}",))
        self._refresh_oldest()

    def clock_record(self) -> str | None:
        """The clocks' reading kept at the last commit or close (``meta.clock_ref``), or ``None``
        (a new buffer, or one written by 0.1.0: it is written from the next commit on)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'clock_ref'").fetchone()
        return None if row is None else str(row[0])

    def save_clock_record(self, text: str) -> None:
        """Inside a transaction: keep ``text`` as the clocks' reading (see :meth:`clock_record`)."""
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('clock_ref', ?)", (text,))

    def settle_clock_shift(self) -> None:
        """Inside a transaction: forget the clock shift once no row stamped before it is left."""
        if self.clock_shift is None:
            return
        _, upto_s, upto_r = self.clock_shift
        left = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM samples WHERE id <= ?) "
            "OR EXISTS (SELECT 1 FROM records WHERE id <= ?)",
            (upto_s, upto_r)).fetchone()[0]
        if not left:
            self.clock_shift = None
            self.conn.execute("DELETE FROM meta WHERE key = 'clock_shift'")

    def _created(self, upto: int) -> tuple[str, tuple[int, float]]:
        """SQL for a row's ``created`` corrected by the clock shift, and its parameters."""
        shift = self.clock_shift
        return "(created + CASE WHEN id <= ? THEN ? ELSE 0 END)", (
            (int(shift[upto]), shift[0]) if shift else (0, 0.0))

    @property
    def total_bytes(self) -> int:
        """Bytes of sample rows and records together (what ``max_bytes`` limits)."""
        return int(self.bytes_total + self.rec_bytes)

    # -- records ---------------------------------------------------------------------------
    def insert_records(self, records: list[tuple[str, str, int, int, bytes]], now: float) -> None:
        """Inside a transaction: store ``(producer, batch_id, seq, n, data)`` records."""
        self.conn.executemany(
            "INSERT INTO records (created, producer, batch_id, seq, n, data) VALUES (?, ?, ?, ?, ?, ?)",
            [(now, *r) for r in records],
        )
        self.rec_count += len(records)
        self.rec_samples += sum(r[3] for r in records)
        self.rec_bytes += sum(len(r[4]) for r in records)
        if self.oldest_created_cached is None:
            self.oldest_created_cached = now

    def records_by_id(self, ids: list[int]) -> list[RecordRow]:
        """The records among ``ids`` that still exist, in id order."""
        out: list[RecordRow] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += self.conn.execute(
                "SELECT id, producer, batch_id, seq, n, data FROM records WHERE id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id", chunk).fetchall()
        return out

    def records_after(self, after: int, limit: int) -> list[RecordRow]:
        """At most ``limit`` records with an id above ``after``, oldest first."""
        return self.conn.execute(
            "SELECT id, producer, batch_id, seq, n, data FROM records WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit)).fetchall()

    def delete_records(self, ids: list[int], *, in_transaction: bool = False) -> int:
        """Delete records by id; returns how many samples they held."""
        if not in_transaction:
            with self.transaction():
                n = self.delete_records(ids, in_transaction=True)
            self._refresh_oldest()
            if self.count_total == 0 and self.rec_count == 0:
                self._reclaim()
            return n
        samples = 0
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            cnt, n, size = self.conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(length(data)), 0) FROM records "
                f"WHERE id IN ({marks})", chunk).fetchone()
            self.conn.execute(f"DELETE FROM records WHERE id IN ({marks})", chunk)
            self.rec_count -= cnt
            self.rec_samples -= n
            self.rec_bytes -= size
            samples += int(n)
        return samples

    def drop_oldest_records(self, excess: int, skip: set[int]) -> int:
        """Inside a transaction: delete the oldest records not in ``skip`` until ``excess`` bytes
        are freed; returns the samples they held."""
        target = self.rec_bytes - excess
        dropped = 0
        after = 0
        while self.rec_bytes > target:
            rows = self.conn.execute(
                "SELECT id, length(data) FROM records WHERE id > ? ORDER BY id LIMIT 500", (after,)
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            need = self.rec_bytes - target
            ids: list[int] = []
            acc = 0
            for rid, size in rows:
                if rid in skip:
                    continue
                ids.append(rid)
                acc += size
                if acc >= need:
                    break
            if ids:
                dropped += self.delete_records(ids, in_transaction=True)
        if dropped:
            self._refresh_oldest()
        return dropped

    def drop_records_older_than(self, cutoff: float, skip: set[int]) -> int:
        """Inside a transaction: delete records committed before ``cutoff`` (epoch s; the clock
        shift corrects the stamps, see :meth:`note_clock_step`), except ``skip``."""
        created, params = self._created(2)
        ids = [int(r[0]) for r in self.conn.execute(
            f"SELECT id FROM records WHERE {created} < ? ORDER BY id", (*params, cutoff)).fetchall()
            if r[0] not in skip]
        dropped = self.delete_records(ids, in_transaction=True) if ids else 0
        if dropped:
            self._refresh_oldest()
        return dropped

    def insert(self, rows: list[bytes], now: float) -> None:
        self.conn.executemany("INSERT INTO samples (created, data) VALUES (?, ?)", [(now, r) for r in rows])
        self.count_total += len(rows)
        self.bytes_total += sum(len(r) for r in rows)
        if self.oldest_created_cached is None:
            self.oldest_created_cached = now

    def set_marks(self, marks: dict[str, str]) -> None:
        """Inside a transaction: upsert connector watermarks (committed with their samples)."""
        self.conn.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?)", marks.items())

    def get_marks(self, prefix: str) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT key, value FROM marks WHERE key >= ? AND key < ?", (prefix, prefix + "\U0010ffff")
        ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def unbatched_count(self) -> int:
        return int(self.count_total - self.batched_count)

    def oldest_unbatched_created(self) -> float | None:
        row = self.conn.execute(
            "SELECT created FROM samples WHERE id > ? ORDER BY id LIMIT 1", (self.batched_upto,)
        ).fetchone()
        return None if row is None else float(row[0])

    def oldest_batch(self, skip: set[int]) -> tuple[int, str, list[bytes]] | None:
        for seq, batch_id, lo, hi in self.conn.execute(
            "SELECT seq, batch_id, lo, hi FROM batches ORDER BY seq"
        ):
            if seq in skip:
                continue
            rows = [
                r[0]
                for r in self.conn.execute(
                    "SELECT data FROM samples WHERE id BETWEEN ? AND ? ORDER BY id", (lo, hi)
                )
            ]
            return int(seq), str(batch_id), rows
        return None

    def form_batch(self, max_items: int) -> tuple[int, str, list[bytes]] | None:
        """Persist a new batch of the oldest ``max_items`` un-batched rows; call it when the
        counters say there is at least one. ``None`` if there is none after all (the counters
        disagreed with the table: they are recounted, see :meth:`resync`)."""
        with self.transaction():
            got = self.conn.execute(
                "SELECT id, data FROM samples WHERE id > ? ORDER BY id LIMIT ?",
                (self.batched_upto, max_items),
            ).fetchall()
            if got:
                lo, hi = got[0][0], got[-1][0]
                seq = self.next_seq
                batch_id = f"{self.nonce}-{seq:010d}"
                self.conn.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, strftime('%s','now'))", (seq, batch_id, lo, hi)
                )
                self.conn.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(str(seq + 1), "next_seq"), (str(hi), "batched_upto")],
                )
        if not got:
            self.resync(f"{self.unbatched_count()} rows counted as not yet batched, none found")
            return None
        self.next_seq, self.batched_upto = seq + 1, hi
        self.batched_count += len(got)
        return seq, batch_id, [r[1] for r in got]

    def _delete_range(self, lo: int, hi: int) -> int:
        n, size = self.conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) FROM samples WHERE id BETWEEN ? AND ?", (lo, hi)
        ).fetchone()
        self.conn.execute("DELETE FROM samples WHERE id BETWEEN ? AND ?", (lo, hi))
        self.count_total -= n
        self.bytes_total -= size
        if hi <= self.batched_upto:
            self.batched_count -= n
        return int(n)

    def delete_batch(self, seq: int, *, in_transaction: bool = False) -> int:
        """Delete a batch and its rows; returns how many rows went."""
        if not in_transaction:
            with self.transaction():
                n = self.delete_batch(seq, in_transaction=True)
            self._refresh_oldest()
            if self.count_total == 0 and self.rec_count == 0:
                self._reclaim()
            return n
        row = self.conn.execute("SELECT lo, hi FROM batches WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return 0
        n = self._delete_range(row[0], row[1])
        self.conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
        return n

    def _reclaim(self) -> None:
        """Give free pages back to the file system; best effort (the delete before it is
        committed whatever happens here: a failure, e.g. disk full, is only logged)."""
        try:
            free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > 256:
                self.conn.execute("PRAGMA incremental_vacuum")
        except sqlite3.Error as exc:
            log.warning("buffer: reclaiming free pages failed (%s); retried after the next delete", exc)

    def drop_oldest_bytes(self, excess: int, skip: set[int]) -> int:
        """Inside a transaction: delete the oldest data not taken until ``excess`` bytes are freed."""
        dropped = 0
        target = self.bytes_total - excess
        for (seq,) in self.conn.execute("SELECT seq FROM batches ORDER BY seq").fetchall():
            if self.bytes_total <= target:
                break
            if seq not in skip:
                dropped += self.delete_batch(seq, in_transaction=True)
        while self.bytes_total > target:
            rows = self.conn.execute(
                "SELECT id, length(data) FROM samples WHERE id > ? ORDER BY id LIMIT 5000",
                (self.batched_upto,),
            ).fetchall()
            if not rows:
                break
            need = self.bytes_total - target
            cut = rows[-1][0]
            acc = 0
            for rid, size in rows:
                acc += size
                if acc >= need:
                    cut = rid
                    break
            dropped += self._delete_range(self.batched_upto + 1, cut)
        self._refresh_oldest()
        return dropped

    def drop_older_than(self, cutoff: float, skip: set[int]) -> int:
        """Inside a transaction: delete data committed before ``cutoff`` (epoch s; the clock
        shift corrects the stamps, see :meth:`note_clock_step`), except ``skip``."""
        dropped = 0
        created, params = self._created(1)
        for seq, lo in self.conn.execute("SELECT seq, lo FROM batches ORDER BY seq").fetchall():
            row = self.conn.execute(
                f"SELECT {created} FROM samples WHERE id >= ? ORDER BY id LIMIT 1", (*params, lo)
            ).fetchone()
            if row is None or row[0] >= cutoff:
                break
            if seq not in skip:
                dropped += self.delete_batch(seq, in_transaction=True)
        row = self.conn.execute(
            f"SELECT MAX(id) FROM samples WHERE id > ? AND {created} < ?",
            (self.batched_upto, *params, cutoff),
        ).fetchone()
        if row[0] is not None:
            dropped += self._delete_range(self.batched_upto + 1, row[0])
        if dropped:
            self._refresh_oldest()
        return dropped
