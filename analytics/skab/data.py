"""Reading the SKAB benchmark files (``;``-separated, 1 Hz, one induced fault per file).

The data is never copied into the repository; pass the directory that holds ``valve1/``,
``valve2/``, ``other/`` (e.g. ``../shared/datasets/skab``). The anomaly-free file is not part of
the protocol and :func:`load_skab` does not load it; :func:`load_anomaly_free` reads it for round 3's
false-alarm proxy (:mod:`analytics.skab.round3`), which uses no SKAB test row and no label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from analytics.errors import DataError

SIGNALS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
           "Voltage", "Volume Flow RateRMS"]
GROUPS = ("valve1", "valve2", "other")


@dataclass(frozen=True)
class SkabFile:
    """One SKAB run: ``values`` (rows x SIGNALS), labels and timestamps (seconds since epoch)."""

    name: str
    ts: NDArray[np.int64]
    values: NDArray[np.float64]
    anomaly: NDArray[np.int64]
    changepoint: NDArray[np.int64]


def _key(path: Path) -> tuple[int, int]:
    return GROUPS.index(path.parent.name), int(path.stem) if path.stem.isdigit() else 0


def _read(p: Path, columns: list[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(p, sep=";")
    except (OSError, ValueError) as exc:
        raise DataError(str(p), f"cannot read: {exc}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(str(p), f"missing columns {missing}")
    return df


def _seconds(df: pd.DataFrame) -> NDArray[np.int64]:
    stamps = pd.to_datetime(df["datetime"]).to_numpy().astype("datetime64[s]")
    secs: NDArray[np.int64] = stamps.astype(np.int64)
    return secs


def load_anomaly_free(root: str | Path) -> SkabFile:
    """``anomaly-free/anomaly-free.csv`` under ``root`` (normal running of the same testbed in
    another regime; every row labelled normal, no changepoints), **cut before its first row whose
    timestamp lies within any protocol file's span**: the file's last 572 rows are ``other/5.csv``'s
    first 572 rows, 172 of them test rows. Only the protocol files' timestamps are read for the
    cut, never their values or labels. Not a protocol file itself."""
    p = Path(root) / "anomaly-free" / "anomaly-free.csv"
    df = _read(p, [*SIGNALS, "datetime"])
    ts = _seconds(df)
    spans = [(f.ts[0], f.ts[-1]) for f in load_skab(root)]
    inside = [j for j, t in enumerate(ts) if any(a <= t <= b for a, b in spans)]
    n = inside[0] if inside else len(ts)
    return SkabFile(name="anomaly-free/anomaly-free.csv", ts=ts[:n],
                    values=df[SIGNALS].to_numpy(dtype=np.float64)[:n],
                    anomaly=np.zeros(n, dtype=np.int64), changepoint=np.zeros(n, dtype=np.int64))


def load_skab(root: str | Path) -> list[SkabFile]:
    """All 34 protocol files under ``root`` in a stable order; ``DataError`` if missing/malformed."""
    base = Path(root)
    paths = sorted((p for g in GROUPS for p in (base / g).glob("*.csv")), key=_key)
    if not paths:
        raise DataError(str(base), "no SKAB files found (expected valve1/*.csv, valve2/*.csv, other/*.csv)")
    files = []
    for p in paths:
        df = _read(p, [*SIGNALS, "datetime", "anomaly", "changepoint"])
        files.append(SkabFile(name=f"{p.parent.name}/{p.name}", ts=_seconds(df),
                              values=df[SIGNALS].to_numpy(dtype=np.float64),
                              anomaly=df["anomaly"].to_numpy().astype(np.int64),
                              changepoint=df["changepoint"].to_numpy().astype(np.int64)))
    return files
