"""Offline, online-style scoring of any CSV export: ``zhizao analytics score FILE.csv ...``.

Contract (each rule is tested):

* **Online.** Rows are processed in time order. The model is fitted on the first ``warmup`` rows
  (after sorting); every later row's score uses only that row and earlier rows. Appending rows
  with later timestamps never changes the output of earlier rows.
* **Output.** ``timestamp,score,is_anomaly``: the input's timestamp text, ``score`` in [0, 1)
  (0.5 = at the threshold, see :mod:`analytics.scoring.model`), ``is_anomaly`` 0/1. Warm-up rows
  are written with score 0 and is_anomaly 0 (they are the model's training data).
* **Time column.** ``time_col`` names it; without it, the column named ``timestamp``, ``time``,
  ``datetime``, ``date``, ``ts`` or ``_time`` (any case), else the first column **only if it holds
  ISO-8601 date/times** (``2026-01-01T06:00:00Z``, ``2026-01-01 06:00:00+08:00``, ``2026-01-01``;
  no offset = UTC). A column chosen by ``time_col`` or by its name may instead be numeric: seconds
  (epoch or any numeric clock); an unnamed first column of numbers is never taken as time. A file
  with no time column is an error saying so; ``no_time=True`` scores the rows in file order with
  the row index (0, 1, 2, ...) as time, written in the output's ``timestamp`` column.
* **Columns.** ``columns`` selects value columns; by default every column except the time column
  that has at least one numeric value. Non-numeric cells count as missing; ``decimal=","`` reads
  decimal commas (``1,5``). A file that seems to use another separator than ``sep`` (a one-column
  header holding ``;``, tab, ``,`` or ``|``), or whose values look like decimal commas, is an error
  that says so and names the option to use. ``sep`` is literal (several characters allowed).
* **Unsorted input** is stably sorted by time (equal timestamps keep file order); the number of
  out-of-order rows is reported. An unparseable timestamp is an error naming its line.
* **Missing values (NaN, empty, non-numeric)** are replaced by the column's last seen value; before
  any value, by the column's warm-up median. A column with no value at all in the warm-up is an
  error. Every replaced cell is counted in the summary.
* **Constant columns** (no spread during warm-up) stay in: their scale is floored at 0.3 % of
  their level (1e-6 for a zero level), so a later change in a stuck signal scores high.
* **Gaps.** When the time step exceeds ``max_gap`` (default: 10 × the warm-up's median step), the
  trailing windows restart after the gap (no averaging across the outage); gaps are counted.
* **Errors** are :class:`~analytics.errors.DataError`; one whose ``where`` is an option
  (``--warmup``, ``--columns``, ``--time-col``, ``--sep``, ``--decimal``, ``--max-gap``) is a usage
  error (the command exits 2), the others are about the file's content (exit 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from analytics.errors import DataError
from analytics.scoring.model import AnomalyModel, ModelSpec

TIME_NAMES = ("timestamp", "time", "datetime", "date", "ts", "_time")


@dataclass
class ScoreSummary:
    """What happened to the input, for the command's report (nothing is dropped silently)."""

    rows: int = 0
    warmup_rows: int = 0
    columns: list[str] = field(default_factory=list)
    time_column: str | None = None
    """None: ``no_time`` (file order, the row index as time)."""
    constant_columns: list[str] = field(default_factory=list)
    out_of_order_rows: int = 0
    imputed_cells: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    anomalous_rows: int = 0
    threshold: float = 0.0

    def lines(self) -> list[str]:
        out = [f"rows scored: {self.rows} (first {self.warmup_rows} = warm-up/training, score 0)",
               f"columns: {', '.join(self.columns)}",
               (f"time: column {self.time_column!r}" if self.time_column is not None
                else "time: none (--no-time): rows in file order, the row index as time"),
               f"anomalous rows: {self.anomalous_rows}; raw threshold {self.threshold:.6g}"]
        if self.out_of_order_rows:
            out.append(f"input not in time order: {self.out_of_order_rows} rows out of order, sorted by time")
        if self.constant_columns:
            out.append(f"constant during warm-up: {', '.join(self.constant_columns)}")
        missing = {k: v for k, v in self.imputed_cells.items() if v}
        if missing:
            out.append("missing/non-numeric cells filled with the last value: "
                       + ", ".join(f"{k}={v}" for k, v in missing.items()))
        if self.gaps:
            out.append(f"time gaps (windows restarted after each): {self.gaps}")
        return out


SEPARATORS = {",": ("','", "','"), ";": ("';'", "';'"), "\t": ("tab", "tab"), "|": ("'|'", "'|'")}
"""Separators a header is checked for when it does not split: (name, spelling for ``--sep``)."""

_DECIMAL_COMMA = re.compile(r"^[-+]?\d*,\d+(?:[eE][-+]?\d+)?$")


def check_options(*, sep: str, warmup: int, decimal: str = ".", max_gap: float | None = None) -> None:
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


def _sep_hint(path: Path, sep: str) -> str:
    """If the header line does not contain ``sep`` but another common separator, say which."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return ""
    if sep in header:
        return ""
    counts = {c: header.count(c) for c in SEPARATORS if c != sep}
    best = max(counts, key=lambda c: counts[c])
    if not counts[best]:
        return ""
    return (f"; its header {header.strip()[:80]!r} has no {sep!r} but {counts[best]} × {best!r}: "
            f"is it {SEPARATORS[best][0]}-separated? try --sep {SEPARATORS[best][1]}")


def _is_datetime_column(raw: pd.Series) -> bool:
    """The first column is taken as time only if its first non-empty values are ISO-8601
    date/times (not numbers): a leading value column is never mistaken for a clock."""
    text = raw.fillna("").str.strip()
    head = text[text != ""].head(5)
    if head.empty or pd.to_numeric(head, errors="coerce").notna().any():
        return False
    return bool(pd.to_datetime(head, errors="coerce", utc=True, format="ISO8601").notna().all())


def _pick_time_col(df: pd.DataFrame, time_col: str | None, path: Path) -> str:
    if time_col is not None:
        if time_col not in df.columns:
            raise DataError("--time-col", f"no column {time_col!r}; columns are {list(df.columns)}")
        return time_col
    for c in df.columns:
        if str(c).strip().lower() in TIME_NAMES:
            return str(c)
    first = str(df.columns[0])
    if _is_datetime_column(df[first]):
        return first
    sample = next((v for v in df[first] if str(v).strip()), "")
    raise DataError(str(path), f"no time column: none is named {'/'.join(TIME_NAMES)} and the first column "
                               f"{first!r} does not hold ISO-8601 date/times (first value {sample!r}); "
                               "name the time column with --time-col C (numbers there are read as "
                               "seconds), or pass --no-time to score the rows in file order with the "
                               "row index as time")


def _parse_times(raw: pd.Series, name: str) -> np.ndarray:
    as_num = pd.to_numeric(raw, errors="coerce")
    if as_num.notna().all():
        return np.asarray(as_num.to_numpy(dtype=np.float64))  # epoch seconds (or any numeric clock)
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise DataError(f"column {name!r}",
                        f"unparseable timestamp {raw.iloc[bad[0]]!r} on line {bad[0] + 2}")
    secs = parsed.dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64) / 1e6
    return np.asarray(secs, dtype=np.float64)


def _numeric(raw: pd.Series, decimal: str) -> pd.Series:
    text = raw.str.strip().replace("", np.nan)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce")


def _not_numbers(df: pd.DataFrame, cols: list[str], decimal: str) -> str:
    """Why the columns ``cols`` hold no number: decimal commas if they look like it."""
    for c in cols:
        sample = next((v for v in df[c] if _DECIMAL_COMMA.fullmatch(str(v).strip())), None)
        if sample is not None and decimal != ",":
            return (f"values are not numbers: column {c!r} has {sample!r}; decimal commas? pass "
                    "--decimal ',' (or convert them to decimal points)")
    return ""


def read_table(path: Path, sep: str, time_col: str | None, columns: list[str] | None, *,
               no_time: bool = False, decimal: str = "."
               ) -> tuple[pd.Series, np.ndarray, pd.DataFrame, int, str | None]:
    """(timestamp text, seconds, numeric values, out-of-order rows, time column), sorted by time
    (``no_time``: file order, the row index as timestamp text and seconds, time column None)."""
    # several characters: the python engine, told so (pandas warns when it falls back by itself);
    # it reads a separator as a regular expression, so escape it to keep it literal
    engine: Any = "python" if len(sep) > 1 else "c"
    try:
        df = pd.read_csv(path, sep=re.escape(sep) if len(sep) > 1 else sep, engine=engine, dtype=str,
                         keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"cannot read CSV: {exc}{_sep_hint(path, sep)}") from exc
    if df.empty:
        raise DataError(str(path), "no data rows")
    if len(df.columns) == 1 and (hint := _sep_hint(path, sep)):
        raise DataError(str(path), f"one column only with separator {sep!r}{hint}")
    if no_time:
        if time_col is not None:
            raise DataError("--no-time", "cannot be combined with --time-col")
        tcol = None
    else:
        tcol = _pick_time_col(df, time_col, path)
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError("--columns", f"no column(s) {missing}; columns are {list(df.columns)}")
        if tcol in columns:
            raise DataError("--columns", f"{tcol!r} is the time column, not a value column")
        cols = columns
        empty = [c for c in cols if not _numeric(df[c], decimal).notna().any()]
        if empty and (why := _not_numbers(df, empty, decimal)):
            raise DataError(str(path), why)
    else:
        candidates = [str(c) for c in df.columns if c != tcol]
        cols = [c for c in candidates if _numeric(df[c], decimal).notna().any()]
        if not cols:
            besides = f" besides the time column {tcol!r}" if tcol is not None else ""
            why = _not_numbers(df, candidates, decimal)
            raise DataError(str(path), f"no numeric value column{besides}" + (f": {why}" if why else ""))
    values = df[cols].apply(lambda s: _numeric(s, decimal)).astype(float)
    if tcol is None:
        index = np.arange(len(df))
        return (pd.Series([str(i) for i in index]), index.astype(np.float64), values.reset_index(drop=True),
                0, None)
    secs = _parse_times(df[tcol], tcol)
    order = np.argsort(secs, kind="stable")
    out_of_order = int((order != np.arange(len(order))).sum())
    return (df[tcol].iloc[order].reset_index(drop=True), secs[order],
            values.iloc[order].reset_index(drop=True), out_of_order, tcol)


def score_csv(path: Path, out: TextIO, *, sep: str = ",", time_col: str | None = None,
              columns: list[str] | None = None, warmup: int = 400, max_gap: float | None = None,
              spec: ModelSpec | None = None, chunk: int = 65536, no_time: bool = False,
              decimal: str = ".") -> ScoreSummary:
    """Score ``path`` and write ``timestamp,score,is_anomaly`` rows to ``out``; see module docstring."""
    check_options(sep=sep, warmup=warmup, decimal=decimal, max_gap=max_gap)
    times, secs, values, out_of_order, tcol = read_table(path, sep, time_col, columns, no_time=no_time,
                                                         decimal=decimal)
    n = len(values)
    if n <= warmup:
        raise DataError(str(path), f"{n} rows, but the warm-up alone needs {warmup}; lower --warmup")
    cols = [str(c) for c in values.columns]
    arr = values.to_numpy(dtype=np.float64)
    warm = arr[:warmup]
    med = np.array([float(np.median(c[~np.isnan(c)])) if (~np.isnan(c)).any() else math.nan for c in warm.T])
    empty = [c for c, m in zip(cols, med, strict=True) if math.isnan(m)]
    if empty:
        raise DataError(f"column(s) {empty}", f"no numeric value in the {warmup} warm-up rows")
    filled, imputed = _forward_fill(arr, med)
    step = np.diff(secs[:warmup])
    gap_limit = max_gap if max_gap is not None else 10.0 * float(np.median(step[step > 0]) if (step > 0).any()
                                                                 else 1.0)
    model = AnomalyModel(spec=spec or ModelSpec()).fit(filled[:warmup], columns=cols)
    summary = ScoreSummary(rows=n, warmup_rows=warmup, columns=cols, time_column=tcol,
                           out_of_order_rows=out_of_order,
                           imputed_cells=dict(zip(cols, imputed, strict=True)), threshold=model.threshold,
                           constant_columns=[c for c, s in zip(cols, np.ptp(filled[:warmup], axis=0),
                                                               strict=True) if s == 0])
    scorer = model.stream()
    scorer.push(filled[:warmup])
    out.write("timestamp,score,is_anomaly\n")
    for i in range(warmup):
        out.write(f"{_csv_text(times.iloc[i])},0.000000,0\n")
    gap_after = np.zeros(n, dtype=bool)
    gap_after[1:] = np.diff(secs) > gap_limit
    for start in range(warmup, n, chunk):
        stop = min(start + chunk, n)
        resets = gap_after[start:stop]
        summary.gaps += int(resets.sum())
        res = scorer.push(filled[start:stop], resets=resets)
        summary.anomalous_rows += int(res.flag.sum())
        out.writelines(f"{_csv_text(times.iloc[start + k])},{s:.6f},{int(f)}\n"
                       for k, (s, f) in enumerate(zip(res.score, res.flag, strict=True)))
    return summary


def _forward_fill(arr: np.ndarray, initial: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Fill NaNs with the last seen value per column (``initial`` before the first)."""
    nan = np.isnan(arr)
    filled = pd.DataFrame(np.vstack([initial[None, :], arr])).ffill().to_numpy()[1:]
    return filled, [int(x) for x in nan.sum(axis=0)]


def _csv_text(value: Any) -> str:
    text = str(value)
    if any(ch in text for ch in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
