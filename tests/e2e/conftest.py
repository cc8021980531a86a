"""End-to-end fixtures: the ``zhizao`` command as a real subprocess (headless Chromium is the
session-wide ``browser`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.browser import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
CI_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "ci.yaml"
__all__ = ["ARTIFACTS", "CI_SCENARIO", "spawn", "zhizao"]


def zhizao(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``zhizao <args>`` (this checkout's code) to completion; output captured as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "zhizao.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def spawn(*args: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160", "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "zhizao.cli", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
