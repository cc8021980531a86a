"""Structure check of generated dashboard JSON: what Grafana needs to render every panel.

Every panel has a datasource (the provisioned uid), at least one non-empty query, a unit, and an id
unique in its dashboard; grid positions stay inside 24 columns and do not overlap; every template
variable a query uses is defined (or is a Grafana macro); uids are unique across dashboards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from dashboards.grafana import DATASOURCE_UID, GRID_COLUMNS

MACROS: Final = frozenset({"timeFilter", "__interval", "interval", "__interval_ms"})
_VAR_RE: Final = re.compile(r"\$(\w+)")


def check_board(doc: Mapping[str, Any]) -> list[str]:
    """Problems of one dashboard document (empty when it is sound); each names the panel."""
    problems: list[str] = []
    uid = doc.get("uid") or "<no uid>"
    if not doc.get("uid") or not doc.get("title"):
        problems.append(f"{uid}: uid and title are required")
    variables = {v.get("name") for v in doc.get("templating", {}).get("list", [])}
    queries: list[tuple[str, str]] = []
    for v in doc.get("templating", {}).get("list", []):
        if v.get("datasource", {}).get("uid") != DATASOURCE_UID or not v.get("query"):
            problems.append(f"{uid}: variable {v.get('name')!r} needs the datasource and a query")
        queries.append((f"variable {v.get('name')}", str(v.get("query", ""))))
    ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    for panel in doc.get("panels", []):
        where = f"{uid}: panel {panel.get('id')} {panel.get('title')!r}"
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in ids:
            problems.append(f"{where}: id missing or duplicated")
        else:
            ids.add(pid)
        if panel.get("datasource", {}).get("uid") != DATASOURCE_UID:
            problems.append(f"{where}: datasource must be {DATASOURCE_UID!r}")
        targets = panel.get("targets") or []
        if not targets or not all(str(t.get("query", "")).strip() for t in targets):
            problems.append(f"{where}: needs at least one non-empty query")
        for t in targets:
            if t.get("datasource", {}).get("uid") != DATASOURCE_UID:
                problems.append(f"{where}: query {t.get('refId')} has another datasource")
            queries.append((where, str(t.get("query", ""))))
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{where}: needs a unit")
        problems += _grid(where, panel.get("gridPos", {}), cells)
    for a in doc.get("annotations", {}).get("list", []):
        if not a.get("builtIn"):
            queries.append((f"{uid}: annotation {a.get('name')!r}", str(a.get("query", ""))))
    for where, query in queries:
        for name in _VAR_RE.findall(query):
            if name not in variables and name not in MACROS and not name.startswith("tag_"):
                problems.append(f"{where}: query uses undefined variable ${name}")
    return problems


def _grid(where: str, pos: Mapping[str, Any], cells: set[tuple[int, int]]) -> list[str]:
    try:
        x, y, w, h = (int(pos[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return [f"{where}: gridPos needs integer x, y, w, h"]
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > GRID_COLUMNS:
        return [f"{where}: gridPos {dict(pos)} is outside the {GRID_COLUMNS}-column grid"]
    mine = {(cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)}
    if mine & cells:
        return [f"{where}: overlaps another panel"]
    cells |= mine
    return []


def check_all(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Problems of every dashboard, plus duplicate uids or titles across them."""
    problems: list[str] = []
    titles: set[str] = set()
    for key, doc in docs.items():
        if doc.get("uid") != key:
            problems.append(f"{key}: file name and uid differ ({doc.get('uid')!r})")
        if doc.get("title") in titles:
            problems.append(f"{key}: title {doc.get('title')!r} is used twice")
        titles.add(str(doc.get("title")))
        problems += check_board(doc)
    return problems
