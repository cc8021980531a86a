"""Every systemd unit in deploy/ stops on a configuration error instead of restarting forever.

``RestartPreventExitStatus=2`` keeps a service that exits 2 (a config error: it needs a person)
from being restarted, but systemd does not apply it to ``ExecStartPre=`` (systemd#11868; the man
page says so since systemd PR #11994): an ``ExecStartPre=... --check`` that fails restarts the unit
every ``RestartSec`` forever. So no unit checks its config in ``ExecStartPre``; each service checks
it at start and exits 2 — run here for real (the unit's own ``ExecStart`` with a bad config file).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_deploy_security import service_section

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "deploy").rglob("*.service"))
BINARY = "/opt/zhizao/venv/bin/zhizao"
SAMPLES = {
    "agent": ROOT / "edge_agent" / "sample-agent.toml",
    "gateway": ROOT / "gateway" / "sample-gateway.toml",
    "analytics serve": ROOT / "analytics" / "scoring" / "service" / "sample.toml",
}
"""The sample config of each command a unit runs (a new unit's command must be added here)."""
TYPO = "not_a_key_h78"


def test_every_unit_is_here() -> None:
    assert [u.name for u in UNITS] == [
        "zhizao-agent.service", "zhizao-gateway.service", "zhizao-scoring.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_no_config_check_in_exec_start_pre(unit: Path) -> None:
    """A config error must end in the main process's exit 2, which RestartPreventExitStatus=2
    honours: the gateway and scoring units checked in ExecStartPre (restarted every 5 s forever)."""
    service = service_section(unit)
    assert service["RestartPreventExitStatus"] == ["2"], unit.name
    checks = [c for c in service.get("ExecStartPre", []) if "--check" in c or "check-config" in c]
    assert checks == [], f"{unit.name}: RestartPreventExitStatus= does not apply to ExecStartPre=: {checks}"
    assert "ExecStartPre" not in service, unit.name


def _command(unit: Path, config: Path) -> tuple[list[str], str]:
    """The unit's ExecStart, run with this checkout's Python and ``config``; and its sample's key."""
    (exec_start,) = service_section(unit)["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == BINARY, exec_start
    args = argv[1:]
    i = args.index("--config")
    args[i + 1] = str(config)
    command = " ".join(args[:2]) if args[0] == "analytics" else args[0]
    assert command in SAMPLES, f"{unit.name}: no sample config known for `zhizao {command}`"
    return [sys.executable, "-m", "zhizao", *args], command


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_service_exits_2_on_a_config_error(unit: Path, tmp_path: Path) -> None:
    """The unit's own ExecStart with its sample config plus a misspelt key: exit 2 naming the key
    (before anything connects; a timeout here means it started running instead)."""
    config = tmp_path / "bad.toml"
    argv, command = _command(unit, config)
    config.write_text(f"{TYPO} = 1\n" + SAMPLES[command].read_text())
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert done.returncode == 2, (unit.name, done.stdout, done.stderr)
    assert TYPO in done.stderr, (unit.name, done.stderr)
