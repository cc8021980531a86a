"""Offline, online-style scoring of any CSV export: ``zhizao analytics score FILE.csv ...``.

Contract (each rule is tested):

* **Online.** Rows are processed in time order. The model is fitted on the first ``warmup`` rows
  (after sorting); every later row's score uses only that row and earlier rows. Appending rows
  with later timestamps never changes the output of earlier rows.
* **Output.** ``timestamp,score,is_anomaly``: the input's timestamp text, ``score`` in [0, 1)
  (0.5 = at the threshold, see :mod:`analytics.scoring.model`), ``is_anomaly`` 0/1. Warm-up rows
  are written with score 0 and is_anomaly 0 (they are the model's training data).
* **Columns.** ``columns`` selects value columns; by default every column except the time column
  that has at least one numeric value. Non-numeric cells count as missing.
* **Unsorted input** is stably sorted by time (equal timestamps keep file order); the number of
  out-of-order rows is reported. An unparseable timestamp is an error naming its line.
* **Missing values (NaN, empty, non-numeric)** are replaced by the column's last seen value; before
  any value, by the column's warm-up median. A column with no value at all in the warm-up is an
  error. Every replaced cell is counted in the summary.
* **Constant columns** (no spread during warm-up) stay in: their scale is floored at 0.3 % of
  their level (1e-6 for a zero level), so a later change in a stuck signal scores high.
* **Gaps.** When the time step exceeds ``max_gap`` (default: 10 × the warm-up's median step), the
  trailing windows restart after the gap (no averaging across the outage); gaps are counted.
"""

from __future__ import annotations

import math
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
    constant_columns: list[str] = field(default_factory=list)
    out_of_order_rows: int = 0
    imputed_cells: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    anomalous_rows: int = 0
    threshold: float = 0.0

    def lines(self) -> list[str]:
        out = [f"rows scored: {self.rows} (first {self.warmup_rows} = warm-up/training, score 0)",
               f"columns: {', '.join(self.columns)}",
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


def _pick_time_col(df: pd.DataFrame, time_col: str | None) -> str:
    if time_col is not None:
        if time_col not in df.columns:
            raise DataError("--time-col", f"no column {time_col!r}; columns are {list(df.columns)}")
        return time_col
    for c in df.columns:
        if str(c).strip().lower() in TIME_NAMES:
            return str(c)
    return str(df.columns[0])


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


def read_table(path: Path, sep: str, time_col: str | None, columns: list[str] | None
               ) -> tuple[pd.Series, np.ndarray, pd.DataFrame, int]:
    """(timestamp text, seconds, numeric values, out-of-order rows), sorted by time."""
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"cannot read CSV: {exc}") from exc
    if df.empty:
        raise DataError(str(path), "no data rows")
    tcol = _pick_time_col(df, time_col)
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise DataError("--columns", f"no column(s) {missing}; columns are {list(df.columns)}")
        cols = columns
    else:
        cols = [c for c in df.columns if c != tcol and pd.to_numeric(df[c], errors="coerce").notna().any()]
        if not cols:
            raise DataError(str(path), f"no numeric value column besides the time column {tcol!r}")
    secs = _parse_times(df[tcol], tcol)
    order = np.argsort(secs, kind="stable")
    out_of_order = int((order != np.arange(len(order))).sum())
    values = df[cols].apply(lambda s: pd.to_numeric(s.replace("", np.nan), errors="coerce")).astype(float)
    return (df[tcol].iloc[order].reset_index(drop=True), secs[order],
            values.iloc[order].reset_index(drop=True), out_of_order)


def score_csv(path: Path, out: TextIO, *, sep: str = ",", time_col: str | None = None,
              columns: list[str] | None = None, warmup: int = 400, max_gap: float | None = None,
              spec: ModelSpec | None = None, chunk: int = 65536) -> ScoreSummary:
    """Score ``path`` and write ``timestamp,score,is_anomaly`` rows to ``out``; see module docstring."""
    times, secs, values, out_of_order = read_table(path, sep, time_col, columns)
    n = len(values)
    if warmup < 2:
        raise DataError("--warmup", "must be at least 2 rows")
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
    summary = ScoreSummary(rows=n, warmup_rows=warmup, columns=cols, out_of_order_rows=out_of_order,
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
