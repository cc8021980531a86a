"""The dead-letter file: JSON lines of everything zhizao refused, with the reason.

One line per refused item: ``{"ts": "...Z", "kind": "mqtt_payload", "reason": "...", ...}``.
``kind`` names the boundary (``mqtt_payload``, ``rejected_sample``); the rest is context (topic,
payload, sample). Nothing refused disappears silently: it is counted here and logged by the
caller. The file is rotated to ``<name>.1`` when it exceeds ``max_bytes``.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


class DeadLetter:
    """Append-only JSONL writer, safe to call from any thread."""

    def __init__(self, path: str | Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, reason: str, **context: Any) -> None:
        """Record one refused item (``context`` values must be JSON-serialisable; bytes are decoded)."""
        doc = {"ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "kind": kind, "reason": reason}
        for key, value in context.items():
            doc[key] = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value
        line = orjson.dumps(doc, default=str) + b"\n"
        with self._lock:
            self.counts[kind] += 1
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("ab") as f:
                f.write(line)

    def read(self) -> list[dict[str, Any]]:
        """Every record of the current file (for tests and ``zhizao agent`` diagnostics)."""
        if not self.path.exists():
            return []
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]
