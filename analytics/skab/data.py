"""Reading the SKAB benchmark files (``;``-separated, 1 Hz, one induced fault per file).

The data is never copied into the repository; pass the directory that holds ``valve1/``,
``valve2/``, ``other/`` (e.g. ``../shared/datasets/skab``). The anomaly-free file is not part of
the protocol and is not loaded.
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


def load_skab(root: str | Path) -> list[SkabFile]:
    """All 34 protocol files under ``root`` in a stable order; ``DataError`` if missing/malformed."""
    base = Path(root)
    paths = sorted((p for g in GROUPS for p in (base / g).glob("*.csv")), key=_key)
    if not paths:
        raise DataError(str(base), "no SKAB files found (expected valve1/*.csv, valve2/*.csv, other/*.csv)")
    files = []
    for p in paths:
        try:
            df = pd.read_csv(p, sep=";")
        except (OSError, ValueError) as exc:
            raise DataError(str(p), f"cannot read: {exc}") from exc
        missing = [c for c in [*SIGNALS, "datetime", "anomaly", "changepoint"] if c not in df.columns]
        if missing:
            raise DataError(str(p), f"missing columns {missing}")
        ts = pd.to_datetime(df["datetime"]).to_numpy().astype("datetime64[s]").astype(np.int64)
        files.append(SkabFile(name=f"{p.parent.name}/{p.name}", ts=ts,
                              values=df[SIGNALS].to_numpy(dtype=np.float64),
                              anomaly=df["anomaly"].to_numpy().astype(np.int64),
                              changepoint=df["changepoint"].to_numpy().astype(np.int64)))
    return files
