"""A KPI report as readable rich tables (one per window), fitted to the console's width.

Rows: every machine, then each line of two or more machines, then the scope's TOTAL when the
scope spans two or more lines — a row that would repeat another's figures is left out (the line of a
single machine is that machine; the total of a single line is that line, whose row is then labelled
``(total)``). A machine that makes no parts (``producing: false``, a compressor) shows "–" for
Performance, Quality and OEE, as the web dashboard does: they are not applicable to it.

When the table is wider than the console, columns are left out, least essential first
(:data:`DROP_ORDER`), and a caption names them; ``--json`` always has every field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

NA = "–"
"""Shown for a missing value or a KPI that does not apply (the web dashboard's mark)."""
NOT_APPLICABLE_TO_UTILITIES = frozenset({"P", "Q", "OEE"})
"""Columns of :data:`~analytics.kpi.record.PRODUCTION_RATIOS` the table shows."""


def _f(x: Any, fmt: str) -> str:
    return NA if x is None else format(x, fmt)


def _short(ts: str) -> str:
    """``2026-11-23T06:00:00.000000Z`` as ``2026-11-23T06:00:00Z`` (the table's title)."""
    return ts.replace(".000000Z", "Z")


def _div(x: Any, d: float) -> Any:
    return None if x is None else x / d


def _flags(r: dict[str, Any]) -> str:
    flags = sorted({f["kind"] for f in r["data_quality"]["flags"]})
    return "ok" if not flags else "[yellow]" + ", ".join(flags) + "[/]"


COLUMNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "planned h": lambda r: _f(r["planned_time_s"] / 3600, ".2f"),
    "A": lambda r: _f(r["availability"], ".3f"),
    "P": lambda r: _f(r["performance"], ".3f"),
    "Q": lambda r: _f(r["quality"], ".3f"),
    "OEE": lambda r: _f(r["oee"], ".3f"),
    "good": lambda r: str(r["good_count"]),
    "scrap": lambda r: str(r["scrap_count"]),
    "kWh": lambda r: _f(r["energy_kwh"], ".1f"),
    "kWh/good": lambda r: _f(r["kwh_per_good_part"], ".3f"),
    "idle kWh %": lambda r: _f(_div(r["idle_energy_share_ratio"], 0.01), ".1f"),
    "peak kW": lambda r: _f(r["peak_kw"], ".1f"),
    "cost": lambda r: f"{r['energy_cost']:.1f} {r['cost_currency']}",
    "fail": lambda r: str(r["failures"]),
    "MTBF h": lambda r: _f(_div(r["mtbf_s"], 3600), ".2f"),
    "MTTR min": lambda r: _f(_div(r["mttr_s"], 60), ".1f"),
    "good/h": lambda r: _f(r["good_parts_per_planned_hour"], ".1f"),
    "data quality": _flags,
}
"""The table's columns after ``asset``, in display order, and how each cell is written."""
DROP_ORDER = ("cost", "MTTR min", "MTBF h", "peak kW", "idle kWh %", "good/h", "planned h", "scrap",
              "fail", "kWh", "Q", "P", "A")
"""Left out in this order while the table is wider than the console (asset, OEE, good, kWh/good and
data quality always stay)."""


def _rows(w: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """``(label, record, last of its section)`` per row; see the module docstring."""
    machines = w["machines"]
    per_line: dict[str, int] = {}
    for m in machines:
        ln = m["machine"].rsplit("/", 1)[0]
        per_line[ln] = per_line.get(ln, 0) + 1
    rows = [(m["machine"], m, False) for m in machines]
    lines = [ln for ln in w["lines"] if per_line.get(ln["line"], 0) > 1]
    if len(w["lines"]) == 1:
        rows += [(f"{ln['line']} (total)", ln, False) for ln in lines]
    else:
        rows += [(ln["line"], ln, False) for ln in lines]
        rows.append(("TOTAL", w["total"], False))
    if machines and len(rows) > len(machines):
        rows[len(machines) - 1] = (*rows[len(machines) - 1][:2], True)
    return rows


def _table(title: str, rows: list[tuple[str, dict[str, Any], bool]], columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("asset", justify="left")
    for col in columns:
        t.add_column(col, justify="left" if col == "data quality" else "right")
    for name, r, last in rows:
        na = r.get("producing") is False
        t.add_row(name, *(NA if na and c in NOT_APPLICABLE_TO_UTILITIES else COLUMNS[c](r) for c in columns),
                  end_section=last)
    return t


def render(report: dict[str, Any], console: Console) -> None:
    """Print each window's table (module docstring)."""
    for w in report["windows"]:
        title = f"{report['scope']} · {w['window']} · {_short(w['start'])} → {_short(w['end'])}"
        rows = _rows(w)
        columns = list(COLUMNS)
        dropped: list[str] = []
        t = _table(title, rows, columns)
        unbounded = console.options.update_width(1_000_000)
        for col in DROP_ORDER:
            if console.measure(t, options=unbounded).maximum <= console.width:
                break
            columns.remove(col)
            dropped.append(col)
            t = _table(title, rows, columns)
        if dropped:
            t.caption = (f"left out to fit {console.width} columns: {', '.join(dropped)} "
                         "(--json has every field)")
            t.caption_justify = "left"
        console.print(t)


_GOAL_TERMS = {"energy_efficiency": ("energy_efficiency_pct", "gain", 1.0),
               "operating_cost": ("operating_cost_reduction_pct", "", -1.0),
               "productivity": ("productivity_pct", "", 1.0)}
"""Per metric: its ``[targets]`` key, the word before the figure, and the sign of the target's %."""


def _vs_goal(m: dict[str, Any], targets: dict[str, Any]) -> str:
    """The change in the target's own terms beside the target (``gain +10.7 % of +15 %``): energy
    efficiency's target is a gain (baseline kWh/part ÷ current − 1), not the kWh/part change."""
    key, word, sign = _GOAL_TERMS.get(m["metric"], ("", "", 1.0))
    if key not in targets:
        return NA
    goal = f"{sign * targets[key]:+.0f} %"
    got = m.get("efficiency_gain_pct") if m["metric"] == "energy_efficiency" else m["change_pct"]
    return f"{(word + ' ') if word else ''}{_f(got, '+.1f')}{'' if got is None else ' %'} of {goal}"


def _quality_warning(rep: dict[str, Any]) -> str | None:
    """One line naming the data-quality flags (that concern KPI inputs) of each period, or None."""
    if rep.get("data_quality_ok", True):
        return None
    parts = []
    for label, key in (("baseline", "baseline_total"), ("current", "current_total")):
        flags = [f for f in rep.get(key, {}).get("data_quality", {}).get("flags", [])
                 if f.get("kpi_input") is not False]
        if flags:
            by: dict[str, set[str]] = {}
            for f in flags:
                by.setdefault(f["kind"], set()).add(str(f.get("machine", "?")))
            named = (f"{k} ({', '.join(sorted(v))})" for k, v in sorted(by.items()))
            parts.append(f"{label}: " + ", ".join(named))
    return ("[yellow]data quality NOT ok — " + "; ".join(parts or ["see --json"]) + " — the figures and"
            " verdicts may be wrong (--json: baseline_total/current_total.data_quality)[/]")


def _improvement_rows(rep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, comparison)``: the scope's total, then each line (when there are two or more),
    then each producing machine (of a line of two or more producing machines)."""
    rows: list[tuple[str, dict[str, Any]]] = [(f"{rep['scope']} (total)", rep)]
    lines = rep.get("lines", [])
    if len(lines) > 1:
        rows += [(ln["line"], ln) for ln in lines]
    machines = [m for m in rep.get("machines", []) if m.get("producing", True)]
    per_line: dict[str, int] = {}
    for m in machines:
        ln = m["machine"].rsplit("/", 1)[0]
        per_line[ln] = per_line.get(ln, 0) + 1
    if len(machines) > 1:
        rows += [(m["machine"], m) for m in machines if per_line[m["machine"].rsplit("/", 1)[0]] > 1]
    return rows


def render_improvement(rep: dict[str, Any], console: Console) -> None:
    """The improvement metrics (names never cut, whatever the console's width) of the scope's
    total, each line and each producing machine; a warning line naming the data-quality flags when
    either period's data are not ok. ``achieved / goal`` states the change in the target's own
    terms (energy efficiency: the gain, baseline ÷ current kWh per good part − 1)."""
    t = Table(title=f"{rep['scope']} · baseline {_short(rep['baseline']['start'])} → "
                    f"{_short(rep['baseline']['end'])} vs {_short(rep['current']['start'])} → "
                    f"{_short(rep['current']['end'])}", title_justify="left")
    rows = _improvement_rows(rep)
    t.add_column("scope", no_wrap=True, min_width=max(len(label) for label, _ in rows))
    t.add_column("metric", no_wrap=True, min_width=max((len(m["metric"]) for m in rep["metrics"]), default=6))
    for col in ("unit", "baseline", "current", "target", "change %", "achieved / goal", "met"):
        t.add_column(col)
    targets = rep.get("targets", {})
    for k, (label, r) in enumerate(rows):
        for n, m in enumerate(r["metrics"]):
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: NA}[m["met"]]
            t.add_row(label if n == 0 else "", m["metric"], m["unit"], _f(m["baseline"], ".4g"),
                      _f(m["current"], ".4g"), _f(m["target"], ".4g"), _f(m["change_pct"], "+.1f"),
                      _vs_goal(m, targets), met,
                      end_section=n == len(r["metrics"]) - 1 and k < len(rows) - 1)
    console.print(t)
    warning = _quality_warning(rep)
    if warning:
        console.print(warning)
