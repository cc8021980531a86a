"""Rendering the boards to JSON files, and checking the committed files are current.

``generated/<uid>.json`` holds each board exactly as :func:`render` produces it (sorted keys, two-space
indent, trailing newline), so ``git diff`` shows every change and :func:`stale` can compare bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from dashboards.boards import BOARDS

GENERATED_DIR: Final = Path(__file__).resolve().parent / "generated"


def boards() -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON, keyed by uid (in board order)."""
    out: dict[str, dict[str, Any]] = {}
    for build in BOARDS:
        doc = build().to_json()
        if doc["uid"] in out:
            raise ValueError(f"two boards share the uid {doc['uid']!r}")
        out[doc["uid"]] = doc
    return out


def render(doc: dict[str, Any]) -> str:
    """The canonical text of a board's JSON file."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(directory: Path = GENERATED_DIR) -> list[Path]:
    """Write every board to ``directory/<uid>.json``, remove JSON files of boards that no longer
    exist, and return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = boards()
    written: list[Path] = []
    for uid, doc in docs.items():
        path = directory / f"{uid}.json"
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    for old in directory.glob("*.json"):
        if old.stem not in docs:
            old.unlink()
    return written


def stale(directory: Path = GENERATED_DIR) -> list[str]:
    """Problems that make the committed files differ from what the code generates (empty = current)."""
    problems: list[str] = []
    docs = boards()
    for uid, doc in docs.items():
        path = directory / f"{uid}.json"
        if not path.exists():
            problems.append(f"{path.name}: missing")
        elif path.read_text(encoding="utf-8") != render(doc):
            problems.append(f"{path.name}: differs from the code")
    orphans = [p for p in sorted(directory.glob("*.json")) if p.stem not in docs]
    problems += [f"{p.name}: no board generates it" for p in orphans]
    return problems
