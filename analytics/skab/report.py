"""The SKAB results table, printed beside the published leaderboard."""

from __future__ import annotations

from collections.abc import Sequence

from analytics.skab.evaluate import SkabResult
from analytics.skab.leaderboard import CHANGEPOINT, OUTLIER

TARGET_F1, TARGET_FAR, TARGET_NAB = 0.80, 13.5, 33.0


def render(results: Sequence[SkabResult], judged: int = 1) -> str:
    """A Markdown table: our rows (marked ``*``) and the published ones, for both tasks, then
    the verdict on the targets for each of the first ``judged`` rows (the pre-registered ones;
    never a row selected on SKAB)."""
    lines = ["Outlier detection (test parts pooled)", "",
             "| algorithm | F1 | FAR % | MAR % |", "|---|---|---|---|"]
    for r in results:
        o = r.outliers
        lines.append(f"| * {r.name} | {o.f1:.2f} | {o.far:.2f} | {o.mar:.2f} |")
    lines += [f"| {n} | {f1:.2f} | {far:.2f} | {mar:.2f} |" for n, f1, far, mar in OUTLIER]
    lines += ["", "Changepoint detection (NAB)", "",
              "| algorithm | Standard | LowFP | LowFN |", "|---|---|---|---|"]
    for r in results:
        n = r.nab
        lines.append(f"| * {r.name} | {n['standard']:.2f} | {n['low_fp']:.2f} | {n['low_fn']:.2f} |")
    lines += [f"| {n} | {a:.2f} | {b:.2f} | {c:.2f} |" for n, a, b, c in CHANGEPOINT]
    if results:
        lines.append("")
    for r in results[:judged]:
        ok_out = round(r.outliers.f1, 2) >= TARGET_F1 and r.outliers.far <= TARGET_FAR
        ok_cp = r.nab["standard"] >= TARGET_NAB
        lines.append(f"targets for '{r.name}': F1 >= {TARGET_F1} with FAR <= {TARGET_FAR}%: "
                     f"{'met' if ok_out else 'NOT met'}; NAB standard >= {TARGET_NAB}: "
                     f"{'met' if ok_cp else 'NOT met'}")
    return "\n".join(lines)
