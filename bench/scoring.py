"""Benchmark: streaming anomaly scoring throughput and model training time.

Run: ``python -m bench.scoring [--quick | --smoke]`` from the repository root. Single-threaded BLAS
(one core).

* streaming: :class:`analytics.scoring.StreamScorer` fed chunks of ``--chunk`` rows of a machine with
  ``--signals`` signals; samples/s = rows × signals / wall time.
* raw ceiling: the same arithmetic (trailing means, robust z, RMS, threshold, trailing vote) done
  by numpy in one vectorised pass over all rows, measured in the same run; ``ratio`` = ours / ceiling.
* training: fitting a model on one day of one machine's 1 Hz data (86,400 rows), per detector.
* service (``zhizao analytics serve``): a real ingest (uvicorn, DuckDB) holding ``--service-machines``
  machines × hours of 1 Hz rows; the service catches up on all of it through ingest's API (read
  the rows, score, write ``anomaly_score`` batches, save state): rows scored/s. Its ceiling, in the
  same run: reading the same rows through the same API in one request per machine and scoring them
  in memory in one push (no windows, no writes). Then live: rows posted at wall-clock time,
  the service's lag (newest data − end of the last scored window) and wall lag (now − that end),
  which the window (``window_s``) + ``lateness_s`` + ``interval_s`` bound by design.

Last line of output: one JSON object. Benchmarks never gate on absolute times.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from analytics.scoring import AnomalyModel, ModelSpec  # noqa: E402
from bench import add_smoke_flag, sized  # noqa: E402


def data(rows: int, signals: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(rows, 1))
    return 50.0 + common + 0.3 * rng.normal(size=(rows, signals))


def best_of(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def raw_ceiling(model: AnomalyModel, X: np.ndarray) -> np.ndarray:
    """Same outputs as the streaming path, numpy in one pass (no chunking, no checks)."""
    det = model.detector
    center, scale = det.center_, det.scale_  # type: ignore[union-attr]
    w = model.spec.windows[0]
    cs = np.cumsum(np.vstack([np.zeros((1, X.shape[1])), X]), axis=0)
    end = np.arange(1, len(X) + 1)
    start = np.maximum(end - w, 0)
    feats = (cs[end] - cs[start]) / (end - start)[:, None]
    z = (feats - center) / scale
    raw = np.sqrt(np.mean(z * z, axis=1))
    above = np.r_[0.0, np.cumsum(raw > model.threshold)]
    v = model.spec.vote_window
    vs = np.maximum(end - v, 0)
    flag = (above[end] - above[vs]) / (end - vs) >= model.spec.vote_fraction
    score: np.ndarray = raw / (raw + model.threshold)
    out: np.ndarray = np.c_[score, flag]
    return out


def csv_throughput(X: np.ndarray, signals: int) -> float:
    """Samples/s of ``score_csv`` on a temp file holding ``X`` with a 1 Hz timestamp column."""
    import io
    import tempfile
    from pathlib import Path

    from analytics.scoring.csv_scorer import score_csv

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.csv"
        ts = (np.arange(len(X)) + 1_700_000_000).astype(np.int64)
        np.savetxt(
            path,
            np.c_[ts, X],
            delimiter=",",
            fmt=["%d"] + ["%.5f"] * signals,
            header="ts," + ",".join(f"s{i}" for i in range(signals)),
            comments="",
        )
        t = best_of(1, lambda: score_csv(path, io.StringIO(), warmup=1000))
    return len(X) * signals / t


def _post_rows(url: str, assets: list[str], X: np.ndarray, t0_us: int, producer: str) -> None:
    """POST 1 Hz rows (``X`` per machine, columns s0..) to ingest as wire-format batches."""
    import httpx
    import orjson

    from zhizao.wire import FORMAT, VERSION

    names = [f"s{i}" for i in range(X.shape[1])]
    with httpx.Client(timeout=120) as c:
        for k, asset in enumerate(assets):
            for a in range(0, len(X), 600):
                samples = []
                for i in range(a, min(a + 600, len(X))):
                    t = np.datetime_as_string(np.datetime64(t0_us + i * 1_000_000, "us"), unit="us") + "Z"
                    samples += [{"asset": asset, "signal": n, "ts": t, "value": float(X[i, j] + k)}
                                for j, n in enumerate(names)]
                body = orjson.dumps({"format": FORMAT, "version": VERSION, "producer": producer,
                                     "batch_id": f"{producer}-{k}-{a}", "seq": a, "samples": samples})
                c.post(f"{url}/api/v1/batches", content=body,
                       headers={"Content-Type": "application/json"}).raise_for_status()


PACE = 5000.0
"""Rows/s of the paced service run (``max_rows_per_s``) beside ingest's load."""


def service_bench(machines: int, hours: float, signals: int, live_s: float) -> dict[str, float]:
    """The scoring service end to end (module docstring); returns its figures.

    Ingest runs as its own process (``python -m ingest serve``, DuckDB), as in production; the
    service runs in this process. Ingest's load rate (the same kind of batches, posted from a
    thread) is measured alone and again while the service catches up on other data.
    """
    import asyncio
    import tempfile
    import threading
    from datetime import timedelta
    from pathlib import Path

    from analytics.registry import ModelRegistry
    from analytics.scoring.service import ScoringService, ServiceConfig
    from analytics.scoring.service.source import IngestApiIO
    from ingest.storage.base import Agg, SeriesQuery, from_us
    from ingest.testing import IngestProcess

    rows = int(hours * 3600)
    cols = [f"s{i}" for i in range(signals)]
    t0_us = 1_790_000_000 * 1_000_000  # 2026-09-21, on the minute grid
    end_us = t0_us + rows * 1_000_000
    X = data(rows, signals, seed=3)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "ingest.toml").write_text(
            f'[storage]\nbackend = "duckdb"\n[storage.duckdb]\npath = "{root / "i.duckdb"}"\n'
            f'[auth]\nenabled = false\ntokens_file = "{root / "tokens.json"}"\n')
        ingest = IngestProcess(root / "ingest.toml")
        ingest.start()
        url = ingest.url
        try:
            reg = ModelRegistry(root / "models")

            def machines_of(scope: str, n: int) -> list[str]:
                return [f"{scope}/a1/line1/m{k}" for k in range(n)]

            def train(assets: list[str]) -> None:
                for k, asset in enumerate(assets):
                    reg.save(asset, AnomalyModel(spec=ModelSpec()).fit(X[:2000] + k, columns=cols))

            def load(assets: list[str], producer: str) -> float:
                t = time.perf_counter()
                _post_rows(url, assets, X, t0_us, producer)
                return rows * signals * len(assets) / (time.perf_counter() - t)

            def cfg(state: str, **kw: object) -> ServiceConfig:
                return ServiceConfig.model_validate({
                    "scopes": ["bench"], "registry": str(root / "models"), "state_dir": str(root / state),
                    "interval_s": 0.01, "quiet_close_s": 0.5, "backfill_s": hours * 3600 + 60,
                    "ingest": {"url": url}, "health": {"port": 0}, **kw})

            async def catch_up(c: ServiceConfig, n: int) -> float:
                svc = ScoringService(c)
                task = asyncio.create_task(svc.run())
                t = time.perf_counter()
                for _ in range(100_000):  # poll the service's own state: ~30 min at most
                    states = [w.state for w in svc.workers.values()]
                    if len(states) == n and all(st is not None and st.cursor_us >= end_us for st in states):
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - t
                svc.stop()
                await task
                return elapsed

            bench = machines_of("bench", machines)
            train(bench)
            out["ingest_load_samples_per_s"] = load(bench, "bench-load")
            elapsed = asyncio.run(catch_up(cfg("state-catchup"), machines))
            scored = rows * machines
            out["service_rows_per_s"] = scored / elapsed
            out["service_samples_per_s"] = scored * signals / elapsed

            async def ceiling() -> float:
                api = cfg("x").ingest
                assert api is not None
                t = time.perf_counter()
                async with IngestApiIO(api) as io:
                    for asset in bench:
                        q = SeriesQuery(asset=asset, start=from_us(t0_us), end=from_us(end_us),
                                        signals=tuple(cols), agg=Agg.MEAN, bucket=timedelta(seconds=1),
                                        limit=rows + 1)
                        got = await io.query(q)
                        M = np.column_stack([s.value for s in got])
                        reg.load(asset).stream().push(M, with_contributions=True)
                return time.perf_counter() - t

            out["ceiling_rows_per_s"] = scored / asyncio.run(ceiling())

            # ingest's load rate while the service catches up (fresh state: it scores everything
            # again), at full speed and paced to PACE rows/s
            def beside(key: str, pace: float) -> tuple[float, float]:
                """(ingest load samples/s, service rows/s) when both run at once."""
                rate: list[float] = []
                loader = threading.Thread(
                    target=lambda: rate.append(load(machines_of(f"other{key}", machines), f"o{key}")))

                async def both() -> float:
                    loader.start()
                    c = cfg(f"state-concurrent{key}", producer=f"bench{key}", max_rows_per_s=pace)
                    t = await catch_up(c, machines)
                    await asyncio.to_thread(loader.join)
                    return t

                t_svc = asyncio.run(both())
                return rate[0], scored / t_svc

            for key, pace in (("", 0.0), ("_paced", PACE)):
                load_rate, svc_rate = beside(key, pace)
                out[f"ingest_load_with_service{key}_samples_per_s"] = load_rate
                out[f"service{key}_concurrent_rows_per_s"] = svc_rate

            async def live() -> tuple[list[float], list[float]]:
                """Rows at wall time (1 row/s per machine), window 5 s, lateness 1 s: lag samples."""
                live_assets = machines_of("live", machines)
                train(live_assets)
                svc = ScoringService(cfg("state-live", window_s=5.0, lateness_s=1.0, interval_s=0.5,
                                         quiet_close_s=60.0, backfill_s=0.0, registry_poll_s=1.0,
                                         scopes=["live"]))
                task = asyncio.create_task(svc.run())
                lags, wall = [], []
                start = time.time()
                i = 0
                while time.time() - start < live_s:
                    now_us = int(time.time()) * 1_000_000
                    await asyncio.to_thread(_post_rows, url, live_assets, X[i:i + 1], now_us, f"live-{i}")
                    i += 1
                    for w in svc.workers.values():
                        if w.state is not None and w.watermark_us is not None and time.time() - start > 10:
                            lags.append((w.watermark_us - w.state.cursor_us) / 1e6)
                            wall.append(time.time() - w.state.cursor_us / 1e6)
                    await asyncio.sleep(max(0.0, 1.0 - (time.time() % 1.0)))
                svc.stop()
                await task
                return lags, wall

            lags, wall = asyncio.run(live())
            if lags:
                out["live_lag_s_p50"] = float(np.median(lags))
                out["live_lag_s_max"] = float(np.max(lags))
                out["live_wall_lag_s_p50"] = float(np.median(wall))
                out["live_wall_lag_s_max"] = float(np.max(wall))
        finally:
            ingest.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scoring")
    p.add_argument("--quick", action="store_true", help="small sizes; finishes well within a minute")
    add_smoke_flag(p)
    p.add_argument("--signals", type=int, default=8)
    p.add_argument("--chunk", type=int, default=1000, help="rows per streaming push")
    p.add_argument("--service-machines", type=int, default=None,
                   help="machines for the service bench (default 4 quick, 10 full, 1 smoke)")
    p.add_argument("--no-service", action="store_true", help="skip the scoring-service bench")
    args = p.parse_args(argv)
    rows = sized(args, full=2_000_000, quick=200_000, smoke=20_000)  # >= 20,000: the paths' check below
    repeats = sized(args, full=3, quick=2, smoke=1)
    X = data(rows, args.signals)
    model = AnomalyModel(spec=ModelSpec()).fit(X[:2000], columns=[f"s{i}" for i in range(args.signals)])

    def stream() -> None:
        s = model.stream()
        for a in range(0, rows, args.chunk):
            s.push(X[a : a + args.chunk])

    t_stream = best_of(repeats, stream)
    t_raw = best_of(repeats, lambda: raw_ceiling(model, X))
    # the two paths agree
    s = model.stream()
    got = np.concatenate([s.push(X[a : a + args.chunk]).score for a in range(0, 20_000, args.chunk)])
    np.testing.assert_allclose(got, raw_ceiling(model, X[:20_000])[:, 0], rtol=1e-9)
    samples = rows * args.signals
    ours, ceiling = samples / t_stream, samples / t_raw
    print(
        f"streaming scoring: {rows:,} rows x {args.signals} signals in chunks of {args.chunk}: "
        f"{t_stream:.3f} s = {ours:,.0f} samples/s ({rows / t_stream:,.0f} rows/s)"
    )
    print(f"raw numpy ceiling (one vectorised pass): {t_raw:.3f} s = {ceiling:,.0f} samples/s")
    print(f"ratio to ceiling: {ours / ceiling:.2f}; target >= 100,000 samples/s per core")

    n1 = sized(args, full=20_000, quick=5_000, smoke=1_000)

    def per_row() -> None:
        s1 = model.stream()
        for i in range(n1):
            s1.push(X[i : i + 1])

    t_row = best_of(1, per_row)
    per_row_rate = n1 * args.signals / t_row
    print(
        f"per-row streaming (chunk of 1 row, the live 1 Hz path): {n1 / t_row:,.0f} rows/s = "
        f"{per_row_rate:,.0f} samples/s"
    )
    csv_rate = csv_throughput(X[: sized(args, full=200_000, quick=50_000, smoke=5_000)], args.signals)
    print(f"CSV scorer end to end (parse, sort check, score, write): {csv_rate:,.0f} samples/s")

    day = data(sized(args, full=86_400, quick=21_600, smoke=3_600), args.signals, seed=1)
    train: dict[str, float] = {}
    for det in ("robust_z", "pca_t2q", "residual", "isolation_forest"):
        spec = ModelSpec(detector=det, detector_params={})
        train[det] = round(best_of(1, lambda sp=spec: AnomalyModel(spec=sp).fit(day)), 3)  # type: ignore[misc]
    ctx = np.c_[np.random.default_rng(2).normal(size=(len(day), 3)), day[:, :1]]
    train["expected_power"] = round(
        best_of(
            1, lambda: AnomalyModel(spec=ModelSpec(detector="expected_power", detector_params={})).fit(ctx)
        ),
        3,
    )
    label = sized(args, full="one day", quick="a quarter day (--quick)", smoke="an hour (--smoke)")
    for k, v in train.items():
        print(f"training on {label} ({len(day):,} rows x {args.signals} signals) with {k}: {v:.3f} s")
    svc: dict[str, float] = {}
    if not args.no_service:
        machines = args.service_machines or sized(args, full=10, quick=4, smoke=1)
        hours = sized(args, full=6.0, quick=2.0, smoke=0.75)
        live_s = sized(args, full=60.0, quick=18.0, smoke=3.0)
        svc = service_bench(machines, hours, args.signals, live_s=live_s)
        print(f"scoring service, {machines} machines x {hours:g} h of 1 Hz rows x {args.signals} signals "
              f"through ingest's API (ingest in its own process): catch-up "
              f"{svc['service_rows_per_s']:,.0f} rows/s = {svc['service_samples_per_s']:,.0f} samples/s")
        print(f"service ceiling (same rows read in one request per machine + one in-memory push): "
              f"{svc['ceiling_rows_per_s']:,.0f} rows/s; ratio "
              f"{svc['service_rows_per_s'] / svc['ceiling_rows_per_s']:.2f}")
        alone, shared = svc["ingest_load_samples_per_s"], svc["ingest_load_with_service_samples_per_s"]
        paced = svc["ingest_load_with_service_paced_samples_per_s"]
        print(f"ingest load (1 Hz rows, 600-row batches from a thread): {alone:,.0f} samples/s alone, "
              f"{shared:,.0f} samples/s while the service catches up at full speed "
              f"(ratio {shared / alone:.2f}), {paced:,.0f} samples/s beside the service paced to "
              f"{PACE:,.0f} rows/s (ratio {paced / alone:.2f}; it scored "
              f"{svc['service_paced_concurrent_rows_per_s']:,.0f} rows/s)")
        if "live_lag_s_p50" in svc:
            print(f"live (1 row/s per machine, window 5 s, lateness 1 s, round 0.5 s): lag p50 "
                  f"{svc['live_lag_s_p50']:.1f} s / max {svc['live_lag_s_max']:.1f} s behind the newest "
                  f"data; "
                  f"wall lag p50 {svc['live_wall_lag_s_p50']:.1f} s / max {svc['live_wall_lag_s_max']:.1f} s")
    print(
        json.dumps(
            {
                "bench": "scoring",
                "quick": args.quick,
                "smoke": args.smoke,
                "rows": rows,
                "signals": args.signals,
                "chunk": args.chunk,
                "samples_per_s": round(ours),
                "raw_samples_per_s": round(ceiling),
                "raw_ratio": round(ours / ceiling, 3),
                "target_samples_per_s": 100_000,
                "per_row_samples_per_s": round(per_row_rate),
                "csv_samples_per_s": round(csv_rate),
                "train_rows": len(day),
                "train_s": train,
                "service": {k: round(v, 2) for k, v in svc.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
