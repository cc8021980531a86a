"""Choosing the frozen SKAB configuration on the simulated proxy (:mod:`analytics.skab.proxy`).

Pre-registered before any candidate was run (on the proxy or on SKAB):

* Candidates (:func:`candidates`): every combination of
  - detector: robust-z RMS (``rel_floor`` 0.003), robust-z max with per-side tail calibration
    (the simulated line's health settings), PCA T²+Q (90 % variance), regression residual
    (MSET-style, ridge ``alpha`` 1);
  - trailing-mean windows: 1 s (none), 5 s, 15 s, or 5 s and 60 s (two time scales);
  - mean-absolute-difference window: none, or 60 s (frozen/chattering sensors);
  - threshold: the 0.99 quantile of the run's own training-row scores × 1.0, 1.25, 1.5 or 2.0;
  - trailing majority vote over 1 (none), 15 or 30 rows.
  Fixed a priori for all: all signals of the run, ``vote_fraction`` 0.5 (a majority), and at most
  one predicted changepoint per 60 rows (the NAB window is 60 s: a second prediction in the same
  window can only cost ``A_fp``).
* Rule (:func:`select`): among the candidates whose pooled proxy FAR is at most 13.5 %, the one
  with the largest ``F1 + NAB_standard / 100`` (both targets of the issue, equally weighted at
  their target scale); ties go to the earlier candidate in :func:`candidates` order.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from analytics.scoring import ModelSpec
from analytics.skab.evaluate import SkabResult, predict_rows, score_predictions
from analytics.skab.frozen import FROZEN_REFRACTORY
from analytics.skab.proxy import ProxyRun

MAX_FAR: Final = 13.5
_T = TypeVar("_T")

DETECTORS: Final[list[tuple[str, str, dict[str, Any]]]] = [
    ("robust-z rms", "robust_z", {"rel_floor": 0.003}),
    ("robust-z max+tail", "robust_z", {"aggregate": "max", "use_std": False, "tail_quantile": 0.999}),
    ("PCA T2+Q", "pca_t2q", {"variance": 0.9}),
    ("residual", "residual", {"alpha": 1.0}),
]
WINDOWS: Final = [[1], [5], [15], [5, 60]]
DIFF_WINDOWS: Final[list[list[int]]] = [[], [60]]
FACTORS: Final = [1.0, 1.25, 1.5, 2.0]
VOTES: Final = [1, 15, 30]


@dataclass(frozen=True)
class Candidate:
    name: str
    spec: ModelSpec


def candidates(detectors: Sequence[tuple[str, str, dict[str, Any]]] = DETECTORS,
               factors: Sequence[float] = FACTORS) -> list[Candidate]:
    """The pre-registered grid of ``detectors`` × windows × mean-|Δ| windows × ``factors`` × votes,
    in tie-break order."""
    out = []
    for (label, det, params), w, dw, k, v in itertools.product(detectors, WINDOWS, DIFF_WINDOWS, factors,
                                                               VOTES):
        spec = ModelSpec(detector=det, detector_params=dict(params), windows=list(w), diff_windows=list(dw),
                         threshold_quantile=0.99, threshold_factor=k, vote_window=v, vote_fraction=0.5)
        out.append(Candidate(f"{label} w={w} diff={dw} k={k} vote={v}", spec))
    return out


def run_candidate(c: Candidate, runs: Sequence[ProxyRun]) -> SkabResult:
    """The SKAB protocol and metrics on the proxy episodes for one candidate."""
    preds = [predict_rows(r.file.values, c.spec, r.columns) for r in runs]
    return score_predictions(c.name, [r.file for r in runs], preds, FROZEN_REFRACTORY)


def map_forked(fn: Callable[[Candidate], _T], cands: Sequence[Candidate], processes: int) -> list[_T]:
    """``[fn(c) for c in cands]``, over ``processes`` forked workers when more than one (``fn``
    must be module-level; what it reads from module globals is inherited by the fork, not pickled)."""
    if processes <= 1:
        return [fn(c) for c in cands]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(fn, cands, chunksize=4)


def objective(r: SkabResult) -> float:
    return r.outliers.f1 + r.nab["standard"] / 100.0


def select(results: Sequence[SkabResult]) -> int:
    """Index of the chosen candidate (see module docstring); ``ValueError`` if none is eligible."""
    eligible = [i for i, r in enumerate(results) if r.outliers.far <= MAX_FAR]
    if not eligible:
        raise ValueError(f"no candidate has proxy FAR <= {MAX_FAR} %")
    return max(eligible, key=lambda i: (objective(results[i]), -i))


def main() -> int:
    """Re-run the selection on the proxy, print every candidate and the choice (about 2 minutes)."""
    from analytics.skab.frozen import SELECTED_CANDIDATE, frozen_spec
    from analytics.skab.proxy import proxy_runs

    runs = proxy_runs()
    cands = candidates()
    results = []
    print("| candidate | F1 | FAR % | MAR % | NAB standard | low FP | low FN |")
    print("|---|---|---|---|---|---|---|")
    for c in cands:
        r = run_candidate(c, runs)
        results.append(r)
        o, n = r.outliers, r.nab
        print(f"| {c.name} | {o.f1:.3f} | {o.far:.2f} | {o.mar:.2f} | {n['standard']:.2f} "
              f"| {n['low_fp']:.2f} | {n['low_fn']:.2f} |", flush=True)
    chosen = cands[select(results)]
    same = chosen.name == SELECTED_CANDIDATE and chosen.spec == frozen_spec()
    print(f"\nselected: {chosen.name} ({'matches' if same else 'DIFFERS from'} the frozen configuration)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
