"""Offline, online-style scoring of any CSV export: ``zhizao analytics score FILE.csv ...``.

Contract (each rule is tested):

* **Online.** Rows are processed in time order. The model is fitted on the first ``warmup`` rows
  (in time order); every later row's score uses only that row and earlier rows. Appending rows
  with later timestamps never changes the output of earlier rows (nor which columns are scored).
* **Streaming.** The file is read in chunks and scored and written as it is read: memory does not
  grow with the file's length for a file in time order (the normal case). See *Unsorted input*.
* **Output.** ``timestamp,score,is_anomaly``: the input's timestamp text, ``score`` in [0, 1)
  (0.5 = at the threshold, see :mod:`analytics.scoring.model`; written with 6 decimals, at most
  0.999999: a row far above the threshold saturates there, never 1.0 nor NaN), ``is_anomaly`` 0/1.
  Warm-up rows are written with score 0 and is_anomaly 0 (they are the model's training data).
* **Time column.** ``time_col`` names it (``Date,Time``: several columns, joined by a space);
  without it, the column named ``timestamp``, ``time``, ``datetime``, ``date``, ``ts`` or
  ``_time`` (any case), else the first column **only if it holds ISO-8601 date/times**. A file
  with no time column is an error saying so; ``no_time=True`` scores the rows in file order with
  the row index (0, 1, 2, ...) as time, written in the output's ``timestamp`` column.
* **Time values** (:mod:`analytics.scoring.csv_time`): one form per column, decided by its first
  value — numbers (seconds: epoch or any numeric clock; not for an unnamed first column), ISO-8601
  (``2026-01-01T06:00:00Z``, ``2026-01-01 06:00:00+08:00``, ``2026-01-01``; no offset = UTC), or
  ``time_format`` (a strftime format such as ``%d/%m/%Y %H:%M:%S``; no ``%z`` = UTC). Nothing is
  guessed per value (``01/02/2026`` is refused without ``--time-format``). A value not of the
  column's form, or empty, is an error naming the column, its file line and the value.
* **Columns.** ``columns`` selects value columns (each must have a number in the warm-up rows, else
  an error); ``exclude`` leaves columns out of the default. By default: every column except the
  time column(s) that has at least one number **in the warm-up rows** — decided from the header and
  the warm-up only, so a row added later never changes it; the others are left out and named in
  the summary. Columns holding only 0/1 in the warm-up are named too (label columns such as SKAB's
  ``anomaly``, ``changepoint`` are data to the scorer: leave them out with ``exclude``).
  ``decimal=","`` reads decimal commas (``1,5``). A file that seems to use another separator than
  ``sep`` (a one-column header holding ``;``, tab, ``,`` or ``|``), or whose left-out columns hold
  values that look like decimal commas **in the warm-up rows** (as the choice, a later row never
  makes it an error), is an error that says so and names the option to use. ``sep`` is literal
  (several characters allowed). ``encoding`` (default UTF-8; a byte-order mark decides for UTF-16
  and UTF-8-with-BOM files); a file that does not decode is an error naming ``--encoding``.
* **Unsorted input** is stably sorted by time (equal timestamps keep file order) with an external
  merge sort in temporary files (:mod:`analytics.scoring.csv_sort`): memory stays bounded, the
  temporary directory needs about the parsed file's size. Into an output that can be rewound (a
  regular file, an in-memory stream), the rows are first scored as they come; at the first row
  earlier than the one before it, the output written so far is discarded and the file is read
  again through the sort. Into any other (a pipe, a device such as ``/dev/null``, a file opened
  for appending), a first pass reads the time column only, then the rows are scored as they come
  if in order (checked again: a row going back then means the file changed between the passes,
  an error), else through the sort: the output is streamed either way, never kept whole. The
  number of rows out of place is reported. Rows with the same timestamp as the row before are
  counted and reported (a date-only time column beside a time-of-day column is named, with
  ``--time-col Date,Time``).
* **Missing values (NaN, empty, non-numeric)** are replaced by the column's last seen value; before
  any value, by the column's warm-up median. ``inf``/``-inf`` and numbers beyond ±1e15 (overflow
  sentinels such as 1e308 or 3.4e38; the trailing sums lose a signal's digits next to them) count
  as missing too, and are reported apart. Every replaced cell is counted in the summary.
* **Constant columns** (no spread during warm-up) stay in: their scale is floored at 0.3 % of
  their level (1e-6 for a zero level), so a later change in a stuck signal scores high. A change
  smaller than that floor is not anomalous: when every training score is 0 (every column constant
  in the warm-up), the threshold is the score of one column moving by its scale floor (one unit),
  as for every :class:`~analytics.scoring.model.AnomalyModel`, and the summary says so.
* **Gaps.** When the time step exceeds ``max_gap`` (default: 10 × the warm-up's median step), the
  trailing windows restart after the gap (no averaging across the outage); gaps are counted.
* **Errors** are :class:`~analytics.errors.DataError`; one whose ``where`` is an option
  (``--warmup``, ``--columns``, ``--time-col``, ``--sep``, ``--decimal``, ``--max-gap``,
  ``--time-format``, ``--encoding``) is a usage error (the command exits 2), the others are about
  the file's content (exit 1).
"""

from __future__ import annotations

import itertools
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from analytics.detectors.base import FloatArray
from analytics.errors import DataError
from analytics.scoring.csv_reader import CsvFile, RawChunk, check_encoding, open_csv
from analytics.scoring.csv_sort import Rows, RunSorter
from analytics.scoring.csv_time import TimeParser, other_time_names, pick_time_column, time_columns
from analytics.scoring.model import AnomalyModel, ModelSpec

SATURATED = 0.999999
"""The highest score written (6 decimals): ``raw / (raw + threshold)`` rounds to 1.0 far above."""
MAX_ABS = 1e15
"""Values beyond ±MAX_ABS count as missing (overflow sentinels)."""


@dataclass
class ScoreSummary:
    """What happened to the input, for the command's report (nothing is dropped silently)."""

    rows: int = 0
    warmup_rows: int = 0
    columns: list[str] = field(default_factory=list)
    time_column: str | None = None
    """None: ``no_time`` (file order, the row index as time); ``Date,Time`` for joined columns."""
    constant_columns: list[str] = field(default_factory=list)
    out_of_order_rows: int = 0
    imputed_cells: dict[str, int] = field(default_factory=dict)
    nonfinite_cells: dict[str, int] = field(default_factory=dict)
    """Of the imputed cells, those that were ±inf or beyond ±:data:`MAX_ABS`."""
    gaps: int = 0
    anomalous_rows: int = 0
    threshold: float = 0.0
    threshold_floored: bool = False
    left_out: list[str] = field(default_factory=list)
    """Columns with no number in the warm-up rows (not scored)."""
    binary_columns: list[str] = field(default_factory=list)
    duplicate_timestamps: int = 0
    blank_lines: int = 0
    time_hint: str = ""

    def lines(self) -> list[str]:
        out = [f"rows scored: {self.rows} (first {self.warmup_rows} = warm-up/training, score 0)",
               f"columns: {', '.join(self.columns)}",
               (f"time: column {self.time_column!r}" if self.time_column is not None
                else "time: none (--no-time): rows in file order, the row index as time"),
               f"anomalous rows: {self.anomalous_rows}; raw threshold {self.threshold:.6g}"]
        if self.left_out:
            out.append(f"left out, no number in the {self.warmup_rows} warm-up rows: "
                       + ", ".join(self.left_out))
        if self.binary_columns:
            out.append(f"only 0/1 in the warm-up: {', '.join(self.binary_columns)} (labels? leave them "
                       f"out with --exclude {','.join(self.binary_columns)})")
        if self.out_of_order_rows:
            out.append(f"input not in time order: {self.out_of_order_rows} rows out of order, sorted by time")
        if self.duplicate_timestamps:
            out.append(f"duplicate timestamps: {self.duplicate_timestamps} rows have the time of the row "
                       "before" + (f"; {self.time_hint}" if self.time_hint else ""))
        if self.constant_columns:
            out.append(f"constant during warm-up: {', '.join(self.constant_columns)}")
        if self.threshold_floored:
            out.append("every warm-up score was 0: threshold = one column moving by its scale floor "
                       "(0.3 % of its level)")
        missing = {k: v for k, v in self.imputed_cells.items() if v}
        if missing:
            out.append("missing/non-numeric cells filled with the last value: "
                       + ", ".join(f"{k}={v}" for k, v in missing.items()))
        bad = {k: v for k, v in self.nonfinite_cells.items() if v}
        if bad:
            out.append(f"of which inf or beyond ±{MAX_ABS:g}: "
                       + ", ".join(f"{k}={v}" for k, v in bad.items()))
        if self.blank_lines:
            out.append(f"blank lines skipped: {self.blank_lines}")
        if self.gaps:
            out.append(f"time gaps (windows restarted after each): {self.gaps}")
        return out


_DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+(?:[eE][-+]?\d+)?$")


def check_options(*, sep: str, warmup: int, decimal: str = ".", max_gap: float | None = None,
                  time_format: str | None = None, no_time: bool = False, encoding: str = "utf-8") -> None:
    """Usage errors of the scorer's options, found before any file is read."""
    if not sep:
        raise DataError("--sep", "must not be empty")
    if sep in ('"', "\n", "\r"):
        raise DataError("--sep", f"{sep!r} cannot separate fields")
    if len(decimal) != 1 or decimal.isdigit() or decimal in ("-", "+"):
        raise DataError("--decimal", f"one character other than a digit or sign expected, not {decimal!r}")
    if decimal == sep:
        raise DataError("--decimal", f"{decimal!r} is also the field separator (--sep)")
    if warmup < 2:
        raise DataError("--warmup", f"must be at least 2 rows, not {warmup}")
    if max_gap is not None and not max_gap > 0:
        raise DataError("--max-gap", f"must be > 0 seconds, not {max_gap}")
    if time_format is not None:
        if no_time:
            raise DataError("--time-format", "cannot be combined with --no-time")
        if "%" not in time_format:
            raise DataError("--time-format", f"a strftime format such as '%d/%m/%Y %H:%M:%S' expected, "
                                             f"not {time_format!r}")
    check_encoding(encoding)


def column_names(text: str | None, option: str) -> list[str] | None:
    """``a,b`` as ``["a", "b"]`` (None without the option); naming no column, or one twice, is a
    usage error (``--columns ','`` used to score every column)."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise DataError(option, f"names no column: {text!r}")
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise DataError(option, f"names {', '.join(map(repr, twice))} twice")
    return names


class _Unsorted(Exception):
    """A row earlier than the row before it: the file goes through the sort."""


@dataclass
class _Plan:
    """What a pass over the file reads: the time column(s), the candidate value columns."""

    path: Path
    header: list[str]
    time_cols: list[str] | None
    candidates: list[str]
    named: bool
    """The candidates are ``--columns`` (each must hold a number), not the default."""
    decimal: str
    time_format: str | None
    nonfinite: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    parser: TimeParser | None = None
    commas: dict[int, tuple[float, int, str]] = field(default_factory=dict)
    """By candidate index: the earliest cell, by (time, file row), of the pass so far that is not
    a number but looks like one with a decimal comma (``1,5``): its (seconds, row, text)."""
    noting: bool = True
    """Whether :meth:`rows` still notes such cells (off once the columns are chosen)."""

    def rows(self, chunks: Iterable[RawChunk]) -> Iterator[Rows]:
        """Parsed rows of a pass (a fresh time parser and counts each pass)."""
        self.parser = TimeParser(self.time_cols, self.time_format) if self.time_cols else None
        self.nonfinite = np.zeros(len(self.candidates), dtype=np.int64)
        self.commas, self.noting = {}, self.decimal != ","
        for raw in chunks:
            values = np.column_stack([_numeric(raw.frame[c], self.decimal) for c in self.candidates])
            if self.parser is None:
                text = raw.rows.astype(str).astype(object)
                secs = raw.rows.astype(np.float64)
            else:
                series = self.parser.text(raw.frame)
                secs = self.parser.seconds(series, raw.lines)
                text = series.to_numpy(dtype=object)
            if self.noting:
                self._note_commas(raw, values, secs)
            bad = np.isinf(values) | (np.abs(values) > MAX_ABS)
            if bad.any():
                self.nonfinite += bad.sum(axis=0)
                values[bad] = np.nan
            yield Rows(text, secs, values, raw.lines, raw.rows)

    def _note_commas(self, raw: RawChunk, values: FloatArray, secs: FloatArray) -> None:
        """Update :attr:`commas` with this chunk's cells (not numbers) that look like decimal
        commas. Chunks come in file order (rows ascending), so a chunk whose earliest time is not
        before a column's noted one cannot hold an earlier cell of it."""
        for j, c in enumerate(self.candidates):
            idx = np.flatnonzero(np.isnan(values[:, j]))
            noted = self.commas.get(j)
            if not len(idx) or (noted is not None and secs[idx].min() >= noted[0]):
                continue
            cells = raw.frame[c].iloc[idx].str.strip()
            hit = np.flatnonzero(cells.str.fullmatch(_DECIMAL_COMMA, na=False).to_numpy(dtype=bool))
            if not len(hit):
                continue
            first = hit[np.argmin(secs[idx[hit]])]  # argmin: the first of equal times (file order)
            key = (float(secs[idx[first]]), int(raw.rows[idx[first]]), str(cells.iloc[first]))
            if noted is None or key[:2] < noted[:2]:
                self.commas[j] = key

    def in_time_order(self, csv: CsvFile) -> bool:
        """Whether the rows are in time order, reading and parsing their time column(s) only (no
        values, no scoring); a time value that does not parse is the same error as in :meth:`rows`.
        A row empty in the time column(s) (a blank line, or an empty time: an error) makes it
        check again reading whole rows, so that the error is raised here too."""
        if not self.time_cols:
            return True  # ``no_time``: the row index is the time
        if not self._time_order(csv.chunks(columns=self.time_cols), self.time_cols):
            return False  # the sort reads every row before writing: any error comes first
        return not csv.blank_rows or self._time_order(csv.chunks(), self.time_cols)

    def _time_order(self, chunks: Iterable[RawChunk], time_cols: list[str]) -> bool:
        parser = TimeParser(time_cols, self.time_format)
        last = -np.inf
        for raw in chunks:
            secs = parser.seconds(parser.text(raw.frame), raw.lines)
            if _earlier(secs, last):
                return False
            last = float(secs[-1]) if len(secs) else last
        return True

    def choose(self, warm: FloatArray, last: tuple[float, int], warmup: int) -> tuple[list[int], list[str]]:
        """(indexes of the scored candidates, left-out names) from the warm-up rows' values;
        ``last``: the (time, file row) of the last warm-up row. A column with no number in the
        warm-up whose warm-up rows hold a decimal comma is an error naming ``--decimal`` (from
        the warm-up rows only, as the choice: a row added later never makes it an error)."""
        self.noting = False
        has = [bool(np.isfinite(col).any()) for col in warm.T]
        empty = [c for c, h in zip(self.candidates, has, strict=True) if not h]
        for j, (secs, row, sample) in sorted(self.commas.items()):
            if not has[j] and (secs, row) <= last:
                raise DataError(str(self.path), f"values are not numbers: column {self.candidates[j]!r} "
                                                f"has {sample!r}; decimal commas? pass --decimal ',' (or "
                                                "convert them to decimal points)")
        if self.named and empty:
            raise DataError(f"column(s) {empty}", f"no numeric value in the {warmup} warm-up rows")
        keep = [i for i, h in enumerate(has) if h]
        if not keep:
            besides = f" besides the time column {','.join(self.time_cols)!r}" if self.time_cols else ""
            raise DataError(str(self.path), f"no numeric value column{besides} in the {warmup} warm-up rows")
        return keep, empty


def _numeric(raw: pd.Series, decimal: str) -> FloatArray:
    text = raw.str.strip().replace("", np.nan)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    return np.asarray(pd.to_numeric(text, errors="coerce"), dtype=np.float64)


def _plan(path: Path, header: list[str], first: pd.DataFrame, *, time_col: str | None,
          columns: list[str] | None, exclude: list[str] | None, no_time: bool, decimal: str,
          time_format: str | None) -> _Plan:
    if no_time:
        if time_col is not None:
            raise DataError("--no-time", "cannot be combined with --time-col")
        tcols = None
    else:
        tcols = time_columns(time_col, header) or [pick_time_column(header, first, str(path))]
    for option, names in (("--columns", columns), ("--exclude", exclude)):
        missing = [c for c in names or [] if c not in header]
        if missing:
            raise DataError(option, f"no column(s) {missing}; columns are {header}")
    if columns:
        clash = [c for c in columns if c in (tcols or [])]
        if clash:
            raise DataError("--columns", f"{clash[0]!r} is the time column, not a value column")
        candidates = list(columns)
    else:
        candidates = [c for c in header if c not in (tcols or []) and c not in (exclude or [])]
        if not candidates:
            raise DataError("--exclude" if exclude else str(path), "no value column left to score")
    return _Plan(path, header, tcols, candidates, bool(columns), decimal, time_format)


def score_csv(path: Path, out: TextIO, *, sep: str = ",", time_col: str | None = None,
              columns: list[str] | None = None, warmup: int = 400, max_gap: float | None = None,
              spec: ModelSpec | None = None, chunk: int = 65536, no_time: bool = False,
              decimal: str = ".", time_format: str | None = None, encoding: str = "utf-8",
              exclude: list[str] | None = None) -> ScoreSummary:
    """Score ``path`` and write ``timestamp,score,is_anomaly`` rows to ``out``; see module docstring.

    ``out`` is written as the rows are scored. If it can be rewound (a regular file, a StringIO),
    an unsorted input found part-way restarts the output through the sort. If not (a pipe, a
    device such as ``/dev/null``, a file opened for appending, as by ``>>``: its position says
    nothing of the content before it), a
    first pass parses the time column only: a file in time order is then scored straight into
    ``out``, another through the sort (time errors are raised before anything is written). A
    failure part-way leaves what was written in ``out``: the command writes into a temporary file
    it removes then (not a pipe)."""
    check_options(sep=sep, warmup=warmup, decimal=decimal, max_gap=max_gap, time_format=time_format,
                  no_time=no_time, encoding=encoding)
    csv = open_csv(path, sep, encoding)
    chunks = csv.chunks()
    first = next(chunks, None)
    if first is None:
        raise DataError(str(path), "no data rows")
    plan = _plan(path, csv.header, first.frame, time_col=time_col, columns=columns, exclude=exclude,
                 no_time=no_time, decimal=decimal, time_format=time_format)
    scoring = _Scoring(plan, warmup=warmup, chunk=chunk, max_gap=max_gap, spec=spec or ModelSpec())
    if _can_rewind(out):  # the first row out of order restarts the output through the sort
        start = out.tell()
        try:
            summary = scoring.run(out, _in_order(plan.rows(itertools.chain([first], chunks))))
        except _Unsorted:
            chunks.close()
            out.seek(start)
            out.truncate()
            summary = _sorted_run(csv, plan, scoring, out)
    else:  # not a file (a pipe, a device): a first pass reads the times, then the output is streamed
        chunks.close()
        if plan.in_time_order(csv):  # checked again as the rows are scored: the file may change
            summary = scoring.run(out, _in_order(plan.rows(csv.chunks()), changed=str(path)))
        else:
            summary = _sorted_run(csv, plan, scoring, out)
    summary.blank_lines = csv.blank_rows
    return summary


def _sorted_run(csv: CsvFile, plan: _Plan, scoring: _Scoring, out: TextIO) -> ScoreSummary:
    """A scoring pass over the file's rows sorted by (time, file row) by the external sort."""
    with RunSorter(len(plan.candidates)) as sorter:
        for rows in plan.rows(csv.chunks()):
            sorter.add(rows)
        return scoring.run(out, sorter.merged())


def _can_rewind(out: TextIO) -> bool:
    """Whether ``out`` can be rewound and cut (``seek`` + ``truncate``): an in-memory stream, or a
    regular file not opened for appending. A device is not, even if seekable: truncating
    ``/dev/null`` (``--out /dev/null``, or stdout redirected to it) is EINVAL."""
    try:
        if not out.seekable():
            return False
        out.tell()
    except (OSError, ValueError):
        return False
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # in memory (io.UnsupportedOperation is both)
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        import fcntl
    except (OSError, ImportError):  # not POSIX: the append flag cannot be read
        return False
    return not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND


def _in_order(blocks: Iterable[Rows], changed: str | None = None) -> Iterator[Rows]:
    """The rows as they come; at the first row earlier than the one before, :class:`_Unsorted`,
    or with ``changed`` (a pass after one that found the rows in order), a ``DataError`` naming
    ``changed`` (the file) and the row's line: the file changed while being read."""
    last = -np.inf
    for rows in blocks:
        if _earlier(rows.secs, last):
            if changed is None:
                raise _Unsorted
            back = int(np.flatnonzero(np.diff(np.r_[last, rows.secs]) < 0)[0])
            raise DataError(changed, f"the file changed while being read: line {int(rows.lines[back])} is "
                                     "earlier than the line before it, and was not in the first pass "
                                     "(which found the rows in time order); score it again when it is "
                                     "not being written (or score a copy)")
        if len(rows):
            last = float(rows.secs[-1])
        yield rows


def _earlier(secs: FloatArray, last: float) -> bool:
    """Whether a time in ``secs`` is earlier than the one before it (``last`` before the first)."""
    return bool(len(secs)) and bool(secs[0] < last or (np.diff(secs) < 0).any())


class _Scoring:
    """One scoring pass over rows in time order: fit on the warm-up rows, then push fixed-size
    chunks (the same chunk boundaries whatever the input's reading or sorting: results are the
    same for a file in order and for the same rows shuffled)."""

    def __init__(self, plan: _Plan, *, warmup: int, chunk: int, max_gap: float | None,
                 spec: ModelSpec) -> None:
        self.plan, self.warmup, self.chunk, self.max_gap, self.spec = plan, warmup, chunk, max_gap, spec

    def run(self, out: TextIO, blocks: Iterator[Rows]) -> ScoreSummary:
        plan, warmup = self.plan, self.warmup
        head = _take(blocks, warmup + 1, str(plan.path))
        if len(head) <= warmup:
            raise DataError(str(plan.path), f"{len(head)} rows, but scoring needs more rows than the "
                                            f"warm-up's {warmup} (the model's training rows); lower --warmup")
        keep, left_out = plan.choose(head.values[:warmup], (float(head.secs[warmup - 1]),
                                                            int(head.rows[warmup - 1])), warmup)
        cols = [plan.candidates[i] for i in keep]
        warm = head.values[:warmup, keep]
        med = np.array([float(np.median(c[~np.isnan(c)])) for c in warm.T])
        filled, last = _ffill(warm, med)
        model = AnomalyModel(spec=self.spec).fit(filled, columns=cols)
        s = ScoreSummary(warmup_rows=warmup, columns=cols, left_out=left_out,
                         time_column=",".join(plan.time_cols) if plan.time_cols else None,
                         threshold_floored=model.threshold_floored,
                         constant_columns=[c for c, p in zip(cols, np.ptp(filled, axis=0), strict=True)
                                           if p == 0],
                         binary_columns=[c for c, col in zip(cols, warm.T, strict=True)
                                         if np.isin(col[~np.isnan(col)], (0.0, 1.0)).all()])
        s.threshold = model.threshold
        missing = np.isnan(warm).sum(axis=0)
        step = np.diff(head.secs[:warmup])
        gap_limit = self.max_gap if self.max_gap is not None else 10.0 * float(
            np.median(step[step > 0]) if (step > 0).any() else 1.0)
        s.duplicate_timestamps = int((step == 0).sum())
        scorer = model.stream()
        scorer.push(filled)
        out.write("timestamp,score,is_anomaly\n")
        _write(out, head.text[:warmup], None, None)
        s.rows = warmup
        s.out_of_order_rows = int((head.rows[:warmup] != np.arange(warmup)).sum())
        prev = float(head.secs[warmup - 1])
        for rows in _reblock(itertools.chain([_slice(head, warmup, len(head))], blocks), self.chunk):
            values = rows.values[:, keep]
            missing += np.isnan(values).sum(axis=0)
            filled, last = _ffill(values, last)
            step = np.diff(np.r_[prev, rows.secs])
            prev = float(rows.secs[-1])
            resets = step > gap_limit
            s.gaps += int(resets.sum())
            s.duplicate_timestamps += int((step == 0).sum())
            s.out_of_order_rows += int((rows.rows != np.arange(s.rows, s.rows + len(rows))).sum())
            s.rows += len(rows)
            res = scorer.push(filled, resets=resets)
            s.anomalous_rows += int(res.flag.sum())
            _write(out, rows.text, res.score, res.flag)
        s.imputed_cells = dict(zip(cols, (int(m) for m in missing), strict=True))
        s.nonfinite_cells = {c: int(plan.nonfinite[i]) for c, i in zip(cols, keep, strict=True)}
        s.time_hint = self._time_hint(s)
        return s

    def _time_hint(self, s: ScoreSummary) -> str:
        parser, tcols = self.plan.parser, self.plan.time_cols
        if parser is None or tcols is None or parser.kind == "number" or not parser.date_only:
            return ""
        others = [c for c in other_time_names(self.plan.header, tcols) if c not in s.columns]
        if not others:
            return ""
        return (f"the time column {tcols[0]!r} holds dates only; column {others[0]!r} may hold the time "
                f"of day: --time-col {','.join([*tcols, others[0]])} joins them")


def _take(blocks: Iterator[Rows], n: int, where: str) -> Rows:
    """At least ``n`` rows from ``blocks`` (fewer only if they end), as one block."""
    got: list[Rows] = []
    count = 0
    while count < n:
        rows = next(blocks, None)
        if rows is None:
            break
        got.append(rows)
        count += len(rows)
    if not got:
        raise DataError(where, "no data rows")
    return _concat(got)


def _reblock(blocks: Iterable[Rows], size: int) -> Iterator[Rows]:
    """The rows in blocks of exactly ``size`` (the last one shorter)."""
    pending: list[Rows] = []
    count = 0
    for rows in blocks:
        if not len(rows):
            continue
        pending.append(rows)
        count += len(rows)
        while count >= size:
            joined = _concat(pending)
            yield _slice(joined, 0, size)
            rest = _slice(joined, size, len(joined))
            pending, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield _concat(pending)


def _concat(parts: Sequence[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]
    return Rows(np.concatenate([p.text for p in parts]), np.concatenate([p.secs for p in parts]),
                np.concatenate([p.values for p in parts]), np.concatenate([p.lines for p in parts]),
                np.concatenate([p.rows for p in parts]))


def _slice(rows: Rows, a: int, b: int) -> Rows:
    return Rows(rows.text[a:b], rows.secs[a:b], rows.values[a:b], rows.lines[a:b], rows.rows[a:b])


def _ffill(arr: FloatArray, last: FloatArray) -> tuple[FloatArray, FloatArray]:
    """NaNs replaced by the last value above them per column (``last`` before the first row);
    also the last row's values, to continue with the next chunk."""
    if not len(arr):
        return arr, last
    if np.isnan(arr).any():
        full = np.vstack([last[None, :], arr])
        index = np.where(np.isnan(full), 0, np.arange(len(full))[:, None])
        np.maximum.accumulate(index, axis=0, out=index)
        arr = full[index, np.arange(full.shape[1])[None, :]][1:]
    return arr, arr[-1].copy()


def _write(out: TextIO, text: np.ndarray, score: FloatArray | None, flag: np.ndarray | None) -> None:
    """``timestamp,score,is_anomaly`` lines (warm-up rows: ``score`` None, written as 0)."""
    texts = [t.decode("utf-8") for t in text.tolist()] if text.dtype.kind == "S" else text.tolist()
    joined = "\0".join(texts)
    if "," in joined or '"' in joined or "\n" in joined or "\r" in joined:
        texts = [_csv_text(t) for t in texts]
    # one write a block: a line at a time, sys.stdout (write-through) made a system call a line
    if score is None or flag is None:
        out.write("".join(f"{t},0.000000,0\n" for t in texts))
        return
    shown = np.minimum(np.nan_to_num(score, nan=SATURATED), SATURATED).tolist()
    out.write("".join(f"{t},{v:.6f},{f}\n" for t, v, f in zip(texts, shown, flag.astype(np.int8).tolist(),
                                                                  strict=True)))


def _csv_text(text: str) -> str:
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
