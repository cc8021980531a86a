"""The dead-letter file: JSON lines of everything zhizao refused, with the reason.

One line per refused item: ``{"ts": "...Z", "kind": "mqtt_payload", "reason": "...", ...}``.
``kind`` names the boundary (``mqtt_payload``, ``rejected_sample``); the rest is context (topic,
payload, sample). Nothing refused disappears silently: it is counted here and logged by the
caller. The file is rotated to ``<name>.1`` when it exceeds ``max_bytes``; a ``<name>.1`` still
there is overwritten then, and its items are lost: they are counted by kind in ``overwritten``
(the agent exports them as ``zhizao_agent_dead_letters_overwritten_total``) and logged as a
WARNING (raise ``max_bytes``, or collect the files, to keep them). A write that fails (disk
full) raises ``OSError``, leaves the file as it was (a partly written line is cut off again) and
counts nothing: the caller keeps the item (the forwarder does not ack its batch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class DeadLetter:
    """Append-only JSONL writer, safe to call from any thread."""

    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        self.overwritten: Counter[str] = Counter()
        """Items lost, by kind: in a ``<name>.1`` overwritten by a rotation."""
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, reason: str, **context: Any) -> None:
        """Record one refused item (``context`` values must be JSON-serialisable; bytes are decoded)."""
        doc = {"ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "kind": kind, "reason": reason}
        for key, value in context.items():
            doc[key] = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value
        line = orjson.dumps(doc, default=str) + b"\n"
        with self._lock:
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self._rotate()
            _append(self.path, line)
            self.counts[kind] += 1  # once written: a write that failed (disk full) raised, uncounted

    def _rotate(self) -> None:
        """Under the lock: move the file to ``<name>.1``, counting what an older ``<name>.1`` held."""
        older = self.path.with_name(self.path.name + ".1")
        lost = _kinds(older)
        self.path.replace(older)
        if lost:
            self.overwritten.update(lost)
            log.warning("dead-letter file %s rotated: %d older items in %s overwritten and lost (%s); "
                        "raise max_bytes or collect the file to keep them", self.path, lost.total(), older,
                        ", ".join(f"{k}: {n}" for k, n in sorted(lost.items())))

    def read(self) -> list[dict[str, Any]]:
        """Every record of the current file (for tests and ``zhizao agent`` diagnostics)."""
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]


def _kinds(path: Path) -> Counter[str]:
    """How many items of each kind the dead-letter file ``path`` holds (none if it is missing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Counter()
    out: Counter[str] = Counter()
    for line in data.splitlines():
        if not line.strip():
            continue
        start = line.find(b'"kind":"')  # written by ``write``: {"ts":"..","kind":"..",..}
        end = line.find(b'"', start + 8) if start >= 0 else -1
        out[line[start + 8:end].decode("utf-8", "replace") if end > 0 else "unknown"] += 1
    return out


def _append(path: Path, line: bytes) -> None:
    """Append ``line`` to ``path`` whole, or raise ``OSError`` and leave the file as it was (what a
    failing write managed to add is cut off again)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
