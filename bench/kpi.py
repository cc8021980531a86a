"""Benchmark: a day of KPIs for a line of 10 machines at 1 s resolution, on DuckDB and InfluxDB.

    python -m bench.kpi [--quick | --smoke]

Synthetic telemetry (state changes, counters, energy and power every second, one process signal)
is written to a DuckDB file and to a real ``influxd`` (skipped with a note if not installed). On each
backend it times (1) the raw ceiling: fetching the same KPI rows from the store, (2) the full KPI
report (fetch + engine + coverage check). Ratio = ceiling time / KPI time (1.0 = the KPI costs
nothing beyond the fetch). ``--quick`` uses 2 hours instead of 24, ``--smoke`` 1 hour. Both backends
must fetch the same rows and report the same windows (``*_rows``, ``*_windows``). No target
(``"target": null``): the figures size a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analytics.kpi.config import KpiConfig
from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi.service import kpi_report
from analytics.kpi.source import MAX_POINTS
from analytics.kpi.windows import GroupBy
from bench import add_smoke_flag, sized
from ingest.storage.base import SampleFrame, SeriesQuery, Store
from zhizao.plant import PlantConfig

START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
STATES = ("running", "idle", "setup", "down")
CHUNK = timedelta(hours=6)


def plant() -> PlantConfig:
    return PlantConfig.model_validate(
        {
            "calendar": {
                "shifts": [
                    {"name": "early", "start": "06:00", "end": "14:00"},
                    {"name": "late", "start": "14:00", "end": "22:00"},
                    {"name": "night", "start": "22:00", "end": "06:00"},
                ]
            },
            "machines": [{"asset": f"b/a/l/m{k}", "ideal_cycle_time_s": {"P": 20.0}} for k in range(10)],
        }
    )


def frame(seconds: int, seed: int = 1) -> SampleFrame:
    """Columnar telemetry of 10 machines (built directly as columns: Sample objects would dominate)."""
    rng = np.random.default_rng(seed)
    f = SampleFrame()
    t0 = int(START.timestamp() * 1e6)
    for k in range(10):
        asset = f"b/a/l/m{k}"
        ts = t0 + np.arange(seconds, dtype=np.int64) * 1_000_000
        state_idx = np.repeat(rng.integers(0, 4, seconds // 300 + 1), 300)[:seconds]
        state_idx[rng.random(seconds) < 0.7] = 0
        power = np.where(state_idx == 0, 20.0, 5.0) + rng.normal(0, 0.5, seconds)
        energy = np.concatenate(([0.0], np.cumsum(power[:-1]) / 3600.0))
        parts = np.cumsum((state_idx == 0) & (rng.random(seconds) < 0.04))

        def add(
            signal: str,
            idx: np.ndarray,
            vtype: str,
            num: list[Any],
            text: list[Any],
            asset: str = asset,
            ts: np.ndarray = ts,
        ) -> None:
            n = len(idx)
            f.asset += [asset] * n
            f.signal += [signal] * n
            f.ts_us += ts[idx].tolist()
            f.vtype += [vtype] * n
            f.value += num
            f.value_str += text
            f.unit += [None] * n
            f.quality += ["good"] * n

        every = np.arange(seconds)
        change = np.nonzero(np.concatenate(([True], np.diff(state_idx) != 0)) | (every % 60 == 0))[0]
        add("state", change, "s", [None] * len(change), [STATES[i] for i in state_idx[change]])
        reasons = ["" if i == 0 else "x" for i in state_idx[change]]
        add("state_reason", change, "s", [None] * len(change), reasons)
        add("product", change, "s", [None] * len(change), ["P"] * len(change))
        pc = np.nonzero(np.concatenate(([True], np.diff(parts) != 0)) | (every % 60 == 0))[0]
        for sig, vals in (("parts_total", parts), ("parts_good", parts), ("parts_scrap", parts * 0)):
            add(sig, pc, "i", vals[pc].astype(float).tolist(), [None] * len(pc))
        add("energy_kwh", every, "f", energy.tolist(), [None] * seconds)
        add("power_kw", every, "f", power.tolist(), [None] * seconds)
        add("melt_temp", every, "f", (220 + rng.normal(0, 1, seconds)).tolist(), [None] * seconds)
    return f


async def measure(store: Store, f: SampleFrame, seconds: int, repeats: int) -> dict[str, float]:
    for i in range(0, len(f), 200_000):
        part = SampleFrame(
            *(
                getattr(f, c)[i : i + 200_000]
                for c in ("asset", "signal", "ts_us", "vtype", "value", "value_str", "unit", "quality")
            )
        )
        await store.write(part)
    end = START + timedelta(seconds=seconds)
    raw, kpi = [], []
    n = windows = 0
    p, cfg = plant(), KpiConfig()
    for _ in range(repeats):
        t = time.perf_counter()
        n, lo = 0, START
        while lo < end:  # the same chunks the KPI fetch uses, nothing done with the rows
            q = SeriesQuery(
                asset="b", start=lo, end=min(lo + CHUNK, end), signals=KPI_SIGNALS, limit=MAX_POINTS
            )
            n += sum(len(s) for s in await store.query(q))
            lo += CHUNK
        raw.append(time.perf_counter() - t)
        assert n > 0
        t = time.perf_counter()
        rep = await kpi_report(store, p, cfg, "b", start=START, end=end, group_by=GroupBy.SHIFT)
        kpi.append(time.perf_counter() - t)
        assert rep["windows"]
        windows = len(rep["windows"])
    return {"raw_fetch_s": min(raw), "kpi_s": min(kpi), "ratio": min(raw) / min(kpi), "rows": n,
            "windows": windows}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = sized(args, full=86400, quick=2 * 3600, smoke=3600)
    repeats = sized(args, full=3, quick=2, smoke=1)
    f = frame(seconds)
    out: dict[str, Any] = {"bench": "kpi", "quick": args.quick, "smoke": args.smoke, "machines": 10,
                           "seconds": seconds, "points": len(f), "target": None}
    from ingest.storage.duckdb.store import DuckDBStore

    with tempfile.TemporaryDirectory() as tmp:
        async with DuckDBStore(str(Path(tmp) / "b.duckdb")) as duck:
            d = await measure(duck, f, seconds, repeats)
        print(f"duckdb: raw fetch {d['raw_fetch_s']:.3f} s, KPIs {d['kpi_s']:.3f} s, ratio {d['ratio']:.2f}")
        out.update({f"duckdb_{k}": round(v, 4) for k, v in d.items()})
        if shutil.which("influxd") is None:
            print("influxdb: influxd not installed, skipped")
            return out
        from ingest.settings import InfluxSettings
        from ingest.storage.influxdb.store import InfluxStore
        from tests.support.servers import InfluxDB

        server = InfluxDB(Path(tmp) / "influx")
        server.start()
        try:
            settings = InfluxSettings(url=server.url, database=server.database, timeout_s=300)
            async with InfluxStore(settings) as influx:
                i = await measure(influx, f, seconds, min(repeats, 2))
        finally:
            server.kill()
        print(
            f"influxdb: raw fetch {i['raw_fetch_s']:.3f} s, KPIs {i['kpi_s']:.3f} s, ratio {i['ratio']:.2f}"
        )
        out.update({f"influx_{k}": round(v, 4) for k, v in i.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 hours instead of 24")
    add_smoke_flag(ap)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
