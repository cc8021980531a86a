"""External merge sort of parsed CSV rows by (time, file row), in bounded memory.

The CSV scorer (:mod:`analytics.scoring.csv_scorer`) sorts an input that is not in time order
here: rows are added in file order, written as sorted runs of :data:`RUN_ROWS` rows to a
temporary directory (``TMPDIR``; about ``24 + 8 × columns`` bytes a row plus the timestamp text),
and merged back ``FAN_IN`` runs at a time. The key (time, row index in the file) makes the sort
stable: equal timestamps keep file order. Memory: one run while writing, about
:data:`MERGE_ROWS` rows while merging, whatever the file's length.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import numpy as np
from numpy.typing import NDArray

from analytics.detectors.base import FloatArray

RUN_ROWS = 262_144
FAN_IN = 64
MERGE_ROWS = 262_144


@dataclass
class Rows:
    """Parsed rows: timestamp text, seconds, values (NaN = missing), file line, row index."""

    text: NDArray[np.generic]
    """str objects, or UTF-8 bytes (``S``) when they come from a sort's runs."""
    secs: FloatArray
    values: FloatArray
    lines: NDArray[np.int64]
    rows: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.secs)


@dataclass
class _Run:
    path: Path
    dtype: np.dtype[np.void]
    n: int


class RunSorter:
    """``add`` rows in file order, then ``merged()`` yields them sorted by (time, row)."""

    def __init__(self, n_values: int) -> None:
        self._n_values = n_values
        self._dir = tempfile.TemporaryDirectory(prefix="zhizao-score-sort-")
        self._pending: list[Rows] = []
        self._pending_rows = 0
        self._runs: list[_Run] = []
        self._written = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._dir.cleanup()

    def add(self, rows: Rows) -> None:
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= RUN_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        text = np.concatenate([np.char.encode(p.text.astype(str), "utf-8") if p.text.dtype.kind != "S"
                               else p.text for p in self._pending])
        rec = np.empty(len(text), dtype=self._dtype(text.dtype.itemsize))
        rec["secs"] = np.concatenate([p.secs for p in self._pending])
        rec["row"] = np.concatenate([p.rows for p in self._pending])
        rec["line"] = np.concatenate([p.lines for p in self._pending])
        rec["values"] = np.concatenate([p.values for p in self._pending])
        rec["text"] = text
        self._pending, self._pending_rows = [], 0
        order = np.argsort(rec["secs"], kind="stable")  # added in file order: rows ascend already
        self._runs.append(self._write(iter([rec[order]]), rec.dtype))

    def _dtype(self, width: int) -> np.dtype[np.void]:
        return np.dtype([("secs", "f8"), ("row", "i8"), ("line", "i8"), ("text", f"S{max(width, 1)}"),
                         ("values", "f8", (self._n_values,))])

    def _write(self, blocks: Iterable[NDArray[np.void]], dtype: np.dtype[np.void]) -> _Run:
        path = Path(self._dir.name) / f"run{self._written}"
        self._written += 1
        n = 0
        with path.open("wb") as fh:
            for block in blocks:
                block.astype(dtype, copy=False).tofile(fh)
                n += len(block)
        return _Run(path, dtype, n)

    def merged(self) -> Iterator[Rows]:
        """Every row added, sorted by (time, row index), in blocks."""
        self._flush()
        runs = self._runs
        while len(runs) > FAN_IN:  # merge groups into longer runs first: memory stays bounded
            longer = []
            for group in (runs[i:i + FAN_IN] for i in range(0, len(runs), FAN_IN)):
                longer.append(self._write(_merge(group, self._common(group)), self._common(group)))
                for r in group:
                    r.path.unlink()
            runs = longer
        for block in _merge(runs, self._common(runs)):
            yield Rows(block["text"], block["secs"], block["values"], block["line"], block["row"])

    def _common(self, runs: list[_Run]) -> np.dtype[np.void]:
        return self._dtype(max((r.dtype["text"].itemsize for r in runs), default=1))


def _merge(runs: list[_Run], dtype: np.dtype[np.void]) -> Iterator[NDArray[np.void]]:
    """k-way merge of sorted runs, a block per run at a time: rows up to the smallest last key
    among the blocks of runs with more rows to read are final, so they are sorted and yielded."""
    block_rows = max(256, MERGE_ROWS // max(len(runs), 1))
    files: list[IO[bytes]] = [r.path.open("rb") for r in runs]
    try:
        left = [r.n for r in runs]
        heads = [np.empty(0, dtype=dtype) for _ in runs]
        while True:
            for i, run in enumerate(runs):
                if not len(heads[i]) and left[i]:
                    heads[i] = np.fromfile(files[i], dtype=run.dtype, count=min(block_rows, left[i])
                                           ).astype(dtype)
                    left[i] -= len(heads[i])
            live = [i for i in range(len(runs)) if len(heads[i])]
            if not live:
                return
            more = [i for i in live if left[i]]
            if more:
                ends = [(float(heads[i]["secs"][-1]), int(heads[i]["row"][-1])) for i in more]
                bound = min(ends)
                takes = {i: _upto(heads[i], bound) for i in live}
            else:
                takes = {i: len(heads[i]) for i in live}
            parts = [heads[i][:k] for i, k in takes.items() if k]
            for i, k in takes.items():
                heads[i] = heads[i][k:]
            block = np.concatenate(parts)
            yield block[np.lexsort((block["row"], block["secs"]))]
    finally:
        for fh in files:
            fh.close()


def _upto(block: NDArray[np.void], bound: tuple[float, int]) -> int:
    """How many leading rows of a sorted block have a key ≤ ``bound``."""
    secs, rows = block["secs"], block["row"]
    lo = int(np.searchsorted(secs, bound[0], side="left"))
    hi = int(np.searchsorted(secs, bound[0], side="right"))
    return lo + int(np.searchsorted(rows[lo:hi], bound[1], side="right"))
