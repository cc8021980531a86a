"""Rendering ``zhizao check`` results: a rich table, JUnit XML and JSON for CI systems."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zhizao.stack.verdict import Result

MARK = {True: "[green]PASS[/]", False: "[bold red]FAIL[/]", None: "[dim]info[/]"}


def passed(results: list[Result]) -> bool:
    """True when no result failed (``ok is False``); informational results never fail a run."""
    return all(r.ok is not False for r in results)


def render(results: list[Result], console: Console, title: str) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in ("", "group", "check", "expected", "actual", "detail"):
        table.add_column(col, overflow="fold")
    for r in results:
        table.add_row(MARK[r.ok], r.group, r.name, r.expected, r.actual, r.detail)
    console.print(table)
    failed = [r for r in results if r.ok is False]
    if failed:
        console.print(f"[bold red]{len(failed)} expectation(s) failed[/] of "
                      f"{sum(r.ok is not None for r in results)}: "
                      + "; ".join(f"{r.name} (expected {r.expected}, got {r.actual})" for r in failed[:5]))
    else:
        console.print(f"[bold green]all {sum(r.ok is not None for r in results)} expectations met[/]")


def write_junit(results: list[Result], path: Path, suite: str, elapsed_s: float) -> None:
    """One ``<testcase>`` per result (informational ones included, never failing)."""
    cases = [r for r in results]
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                       failures=str(sum(r.ok is False for r in cases)), errors="0",
                       skipped="0", time=f"{elapsed_s:.3f}")
    for r in cases:
        tc = ET.SubElement(ts, "testcase", classname=f"{suite}.{r.group}", name=r.name, time="0")
        text = f"expected {r.expected}, got {r.actual}" + (f" ({r.detail})" if r.detail else "")
        if r.ok is False:
            ET.SubElement(tc, "failure", message=text).text = text
        else:
            ET.SubElement(tc, "system-out").text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_json(results: list[Result], path: Path, meta: dict[str, Any]) -> None:
    doc = {**meta, "passed": passed(results), "failures": sum(r.ok is False for r in results),
           "results": [r.to_dict() for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
