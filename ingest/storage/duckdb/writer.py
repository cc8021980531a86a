"""The DuckDB write path. Everything here runs on the store's single writer thread.

* **Group commit**: all batches queued while the previous transaction ran are committed in one
  transaction (DuckDB inserts are far cheaper per row in bulk): one Arrow table into ``samples``,
  one ``INSERT`` of their dedup records into ``batches`` — all or nothing.
* **Dedup index**: the process holds the only connection to the file, so an in-memory set of
  the hashes of every (producer, batch_id) in ``batches`` is authoritative: a miss means a new
  batch without touching the database; a hit is confirmed with one ``SELECT``.
* **Catalogue**: ``signals`` (catalogue + latest value) is upserted from the tables written
  since the last upsert, at most once per ``catalogue_interval_s`` inside a write transaction,
  and on demand before catalogue/latest reads. ``meta.clean`` is ``false`` while the file is
  open; after a crash it is rebuilt from ``samples`` at the next open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from ingest.storage.base import BatchKey, SampleFrame, WriteResult
from ingest.storage.duckdb.schema import COLUMNS, UPSERT_SIGNALS

_SCHEMA = pa.schema([
    ("ts", pa.timestamp("us")), ("asset", pa.string()), ("signal", pa.string()), ("vtype", pa.string()),
    ("value", pa.float64()), ("value_str", pa.string()), ("unit", pa.string()), ("quality", pa.string()),
])


def frame_to_arrow(frame: SampleFrame) -> pa.Table:
    """The Arrow table of ``frame`` with the ``samples`` column order."""
    return pa.Table.from_arrays([
        pa.array(frame.ts_us, pa.timestamp("us")), pa.array(frame.asset, pa.string()),
        pa.array(frame.signal, pa.string()), pa.array(frame.vtype, pa.string()),
        pa.array(frame.value, pa.float64()), pa.array(frame.value_str, pa.string()),
        pa.array(frame.unit, pa.string()), pa.array(frame.quality, pa.string()),
    ], schema=_SCHEMA)


@dataclass(slots=True)
class WriteRequest:
    frame: SampleFrame
    key: BatchKey | None


def _h(key: BatchKey) -> int:
    return hash((key.producer, key.batch_id))


class Writer:
    """State of the writer thread. Not thread-safe: call only from that thread."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalogue_interval_s: float = 1.0) -> None:
        self.con = con
        self.catalogue_interval_s = catalogue_interval_s
        self._index: set[int] = set()
        self._uncatalogued: list[pa.Table] = []
        self._last_catalogue = time.monotonic()

    def open(self) -> None:
        """Load the dedup index; rebuild the catalogue if the file was not closed cleanly."""
        con = self.con
        frame_to_arrow(SampleFrame())  # pyarrow imports pandas on first use: pay it here, not in a batch
        self._load_index()
        row = con.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
        if row is not None and row[0] != "true":
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM signals")
            con.execute(UPSERT_SIGNALS.format(source="samples"))
            con.execute("COMMIT")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('clean', 'false')")

    def close(self) -> None:
        self.flush_catalogue()
        self.con.execute("INSERT OR REPLACE INTO meta VALUES ('clean', 'true')")

    def _lookup(self, key: BatchKey) -> int | None:
        row = self.con.execute("SELECT accepted FROM batches WHERE producer = ? AND batch_id = ?",
                               [key.producer, key.batch_id]).fetchone()
        return None if row is None else int(row[0])

    def seen(self, key: BatchKey) -> int | None:
        return self._lookup(key) if _h(key) in self._index else None

    def commit(self, group: list[WriteRequest]) -> list[WriteResult]:
        """Commit ``group`` in one transaction; raises ``duckdb.Error`` (nothing committed) on failure."""
        results: list[WriteResult] = []
        now_keys: dict[BatchKey, int] = {}
        frames: list[SampleFrame] = []
        for req in group:
            if req.key is not None:
                prev = now_keys.get(req.key)
                if prev is None and _h(req.key) in self._index:
                    prev = self._lookup(req.key)
                if prev is not None:
                    results.append(WriteResult(prev, duplicate=True))
                    continue
                now_keys[req.key] = len(req.frame)
            frames.append(req.frame)
            results.append(WriteResult(len(req.frame)))
        frame = frames[0] if len(frames) == 1 else SampleFrame()
        if len(frames) > 1:
            for f in frames:
                frame.extend(f)
        table = frame_to_arrow(frame) if len(frame) else None
        due = time.monotonic() - self._last_catalogue >= self.catalogue_interval_s
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            if table is not None:
                con.register("_zz_frame", table)
                try:
                    con.execute(f"INSERT INTO samples SELECT {', '.join(COLUMNS)} FROM _zz_frame")
                finally:
                    con.unregister("_zz_frame")
            if now_keys:
                received = datetime.now(UTC).replace(tzinfo=None)
                params: list[Any] = []
                for k, n in now_keys.items():
                    params += [k.producer, k.batch_id, n, received]
                values = ", ".join(["(?, ?, ?, ?)"] * len(now_keys))
                con.execute(f"INSERT INTO batches VALUES {values}", params)
            if due:
                self._upsert_catalogue([*self._uncatalogued, *([table] if table is not None else [])])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._index.update(_h(k) for k in now_keys)
        if due:
            self._uncatalogued = []
            self._last_catalogue = time.monotonic()
        elif table is not None:
            self._uncatalogued.append(table)
        return results

    def _upsert_catalogue(self, tables: list[pa.Table]) -> None:
        if not tables:
            return
        self.con.register("_zz_cat", pa.concat_tables(tables) if len(tables) > 1 else tables[0])
        try:
            self.con.execute(UPSERT_SIGNALS.format(source="_zz_cat"))
        finally:
            self.con.unregister("_zz_cat")

    def flush_catalogue(self) -> None:
        """Upsert the catalogue now if any committed samples are not in it yet."""
        if not self._uncatalogued:
            return
        self.con.execute("BEGIN TRANSACTION")
        try:
            self._upsert_catalogue(self._uncatalogued)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self._uncatalogued = []
        self._last_catalogue = time.monotonic()

    def prune(self, max_age: timedelta, max_entries: int) -> None:
        """Drop dedup records older than ``max_age`` or beyond the ``max_entries`` newest."""
        cutoff = datetime.now(UTC).replace(tzinfo=None) - max_age
        self.con.execute("DELETE FROM batches WHERE received < ?", [cutoff])
        self.con.execute(
            "DELETE FROM batches WHERE (producer, batch_id) IN (SELECT producer, batch_id FROM batches "
            "ORDER BY received DESC OFFSET ?)", [max_entries])
        self._load_index()

    def _load_index(self) -> None:
        rows = self.con.execute("SELECT producer, batch_id FROM batches").fetchall()
        self._index = {hash(row) for row in rows}
