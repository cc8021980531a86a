"""A KPI report as readable rich tables (one per window)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _f(x: Any, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def render(report: dict[str, Any], console: Console) -> None:
    """Print each window: machines, then lines, then the scope total; flags named per row."""
    for w in report["windows"]:
        title = f"{report['scope']} · {w['window']} · {w['start']} → {w['end']}"
        t = Table(title=title, title_justify="left")
        for col in ("asset", "planned h", "A", "P", "Q", "OEE", "good", "scrap", "kWh", "kWh/good",
                    "idle kWh %", "peak kW", "cost", "fail", "MTBF h", "MTTR min", "good/h", "data quality"):
            t.add_column(col, justify="left" if col in ("asset", "data quality") else "right")
        rows = [(m["machine"], m) for m in w["machines"]] + [(ln["line"], ln) for ln in w["lines"]]
        rows.append(("TOTAL", w["total"]))
        for name, r in rows:
            flags = sorted({f["kind"] for f in r["data_quality"]["flags"]})
            share = r["idle_energy_share_ratio"]
            t.add_row(
                name, _f(r["planned_time_s"] / 3600, ".2f"), _f(r["availability"], ".3f"),
                _f(r["performance"], ".3f"), _f(r["quality"], ".3f"), _f(r["oee"], ".3f"),
                str(r["good_count"]), str(r["scrap_count"]), _f(r["energy_kwh"], ".1f"),
                _f(r["kwh_per_good_part"], ".3f"), _f(share * 100 if share is not None else None, ".1f"),
                _f(r["peak_kw"], ".1f"), f"{r['energy_cost']:.1f} {r['cost_currency']}", str(r["failures"]),
                _f(r["mtbf_s"] / 3600 if r["mtbf_s"] is not None else None, ".2f"),
                _f(r["mttr_s"] / 60 if r["mttr_s"] is not None else None, ".1f"),
                _f(r["good_parts_per_planned_hour"], ".1f"),
                "ok" if not flags else "[yellow]" + ", ".join(flags) + "[/]",
                end_section=name == rows[len(w["machines"]) - 1][0] if w["machines"] else False,
            )
        console.print(t)


def render_improvement(rep: dict[str, Any], console: Console) -> None:
    t = Table(title=f"{rep['scope']} · baseline {rep['baseline']['start']} → {rep['baseline']['end']} "
                    f"vs {rep['current']['start']} → {rep['current']['end']}", title_justify="left")
    for col in ("metric", "unit", "baseline", "current", "target", "change %", "met"):
        t.add_column(col)
    for m in rep["metrics"]:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[m["met"]]
        t.add_row(m["metric"], m["unit"], _f(m["baseline"], ".4g"), _f(m["current"], ".4g"),
                  _f(m["target"], ".4g"), _f(m["change_pct"], "+.1f"), met)
    console.print(t)
