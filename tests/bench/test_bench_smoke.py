"""Every benchmark runs end to end: ``python -m bench.<name> --smoke`` (tiny sizes, its real servers)
exits 0 within :data:`TIMEOUT_S` and its last line is its JSON result, whose correctness fields
hold. CI never runs the full benches; without this a bench that no longer runs went unseen (after
a protocol change in the HTTP uplink ``bench.agent_drain`` waited forever). Speed figures and
ratios are never asserted: the machines are shared and noisy, and a smoke run's figures mean
nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120.0
"""A smoke run takes seconds; one that takes this long hangs."""


def _agent_drain(r: dict[str, Any]) -> None:
    assert r["backlog"] > 0  # the outage left something to drain
    assert r["dead_letters"] == 0


def _agent_mqtt(r: dict[str, Any]) -> None:
    assert r["exactly_once"] is True, r["exactly_once_by_kind"]
    assert all(r["exactly_once_by_kind"].values())


def _agent_opcua(r: dict[str, Any]) -> None:
    assert r["agent_tags"] == r["tags"]  # the agent browsed every tag
    assert r["agent_committed"] > 0
    assert 0 < r["agent_forwarded"] <= r["agent_committed"]


def _gateway(r: dict[str, Any]) -> None:
    assert r["ingest_rows"] == r["ingest_distinct_rows"] == r["samples"]  # exactly once
    assert r["gateway_backlog_at_end"] == 0


def _ingest(r: dict[str, Any]) -> None:
    # both stores ran, through ingest in both wire formats (every request was answered as expected)
    for key in ("duckdb_samples_per_s", "duckdb_samples_per_s_v1", "influx_samples_per_s",
                "influx_samples_per_s_v1", "influx_direct_samples_per_s"):
        assert key in r, key


def _kpi(r: dict[str, Any]) -> None:
    assert "influx_rows" in r, "influxd is missing: scripts/test.sh installs it"
    assert r["duckdb_rows"] == r["influx_rows"] > 0  # the same rows from both stores
    assert r["duckdb_windows"] == r["influx_windows"] > 0


def _scoring(r: dict[str, Any]) -> None:
    assert set(r["train_s"]) == {"robust_z", "pca_t2q", "residual", "isolation_forest", "expected_power"}
    for key in ("service_rows_per_s", "ceiling_rows_per_s", "service_concurrent_rows_per_s",
                "service_paced_concurrent_rows_per_s"):
        assert key in r["service"], key  # the service caught up on every row (else it never returns)


def _sim_opcua(r: dict[str, Any]) -> None:
    assert r["variables"] > 0
    assert r["raw_value_changes"] > 0  # the subscriptions delivered value changes from both servers
    assert r["value_changes"] > 0


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "agent_drain": _agent_drain,
    "agent_mqtt": _agent_mqtt,
    "agent_opcua": _agent_opcua,
    "gateway": _gateway,
    "ingest": _ingest,
    "kpi": _kpi,
    "scoring": _scoring,
    "sim_opcua": _sim_opcua,
}


def test_every_bench_has_a_smoke_check() -> None:
    benches = {p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    assert benches == set(CHECKS)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run(name: str) -> tuple[int | None, str, str, float]:
    """Run the bench in its own process group (its servers too); on a hang kill the group.
    Returns (exit code or None on a hang, stdout, stderr, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}  # a hang's tail is all there
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{name}", "--smoke"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    code: int | None
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever it left running (a server not stopped)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return code, out, err, time.monotonic() - start


@pytest.mark.parametrize(
    "name", [pytest.param(n, id=n, marks=pytest.mark.xdist_group(f"bench-{n}")) for n in CHECKS]
)
def test_bench_runs_end_to_end(name: str) -> None:
    code, out, err, seconds = _run(name)
    output = f"stdout:\n{_tail(out)}\nstderr:\n{_tail(err)}"
    assert code is not None, f"bench.{name} --smoke still running after {TIMEOUT_S:.0f} s (killed)\n{output}"
    assert code == 0, f"bench.{name} --smoke exited {code} after {seconds:.1f} s\n{output}"
    lines = out.strip().splitlines()
    assert lines, f"bench.{name} --smoke printed nothing\n{output}"
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise AssertionError(f"bench.{name}: last line is not JSON ({e})\n{output}") from None
    assert isinstance(result, dict), f"bench.{name}: last line is not one JSON object\n{output}"
    assert result.get("bench") == name
    assert result.get("smoke") is True
    assert any(key.startswith("target") for key in result), f"bench.{name}: no target in {sorted(result)}"
    CHECKS[name](result)
