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


def render_improvement(rep: dict[str, Any], console: Console) -> None:
    """The improvement metrics (names never cut, whatever the console's width)."""
    t = Table(title=f"{rep['scope']} · baseline {_short(rep['baseline']['start'])} → "
                    f"{_short(rep['baseline']['end'])} vs {_short(rep['current']['start'])} → "
                    f"{_short(rep['current']['end'])}", title_justify="left")
    t.add_column("metric", no_wrap=True, min_width=max((len(m["metric"]) for m in rep["metrics"]), default=6))
    for col in ("unit", "baseline", "current", "target", "change %", "met"):
        t.add_column(col)
    for m in rep["metrics"]:
        met = {True: "[green]yes[/]", False: "[red]no[/]", None: NA}[m["met"]]
        t.add_row(m["metric"], m["unit"], _f(m["baseline"], ".4g"), _f(m["current"], ".4g"),
                  _f(m["target"], ".4g"), _f(m["change_pct"], "+.1f"), met)
    console.print(t)
