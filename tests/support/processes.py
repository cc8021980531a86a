"""Running a zhizao command as a real process in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def stderr_until(args: list[str], marker: str, seconds: float = 30.0) -> list[str]:
    """Start ``python -m zhizao <args>``, collect its stderr lines until one contains ``marker`` (or
    ``seconds`` passed), stop it with SIGTERM (kill after 15 s) and return the lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "zhizao", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not any(marker in line for line in lines):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    reader.join(5)
    return lines
