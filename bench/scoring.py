"""Benchmark: streaming anomaly scoring throughput and model training time.

Run: ``python -m bench.scoring [--quick]`` from the repository root. Single-threaded BLAS (one core).

* streaming: :class:`analytics.scoring.StreamScorer` fed chunks of ``--chunk`` rows of a machine with
  ``--signals`` signals; samples/s = rows × signals / wall time.
* raw ceiling: the same arithmetic (trailing means, robust z, RMS, threshold, trailing vote) done
  by numpy in one vectorised pass over all rows, measured in the same run; ``ratio`` = ours / ceiling.
* training: fitting a model on one day of one machine's 1 Hz data (86,400 rows), per detector.

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scoring")
    p.add_argument("--quick", action="store_true", help="small sizes; finishes well within a minute")
    p.add_argument("--signals", type=int, default=8)
    p.add_argument("--chunk", type=int, default=1000, help="rows per streaming push")
    args = p.parse_args(argv)
    rows = 200_000 if args.quick else 2_000_000
    repeats = 2 if args.quick else 3
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

    n1 = 5_000 if args.quick else 20_000

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
    csv_rate = csv_throughput(X[: 50_000 if args.quick else 200_000], args.signals)
    print(f"CSV scorer end to end (parse, sort check, score, write): {csv_rate:,.0f} samples/s")

    day = data(86_400 if not args.quick else 21_600, args.signals, seed=1)
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
    label = "one day" if not args.quick else "a quarter day (--quick)"
    for k, v in train.items():
        print(f"training on {label} ({len(day):,} rows x {args.signals} signals) with {k}: {v:.3f} s")
    print(
        json.dumps(
            {
                "bench": "scoring",
                "quick": args.quick,
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
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
