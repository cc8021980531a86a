"""install.sh reads /etc/zhizao/agent.env as the unit's EnvironmentFile= does before it checks the
config as the service user: nothing in it is run or expanded (sourcing it with '.' ran 'horse' of
'MQTT_PASSWORD=correct horse battery' as root and cut the password)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

INSTALL = Path(__file__).resolve().parents[2] / "deploy" / "edge" / "install.sh"


def load(env_text: str, tmp_path: Path, *names: str) -> tuple[list[str], str]:
    func = re.search(r"^load_env_file\(\) \{\n.*?^\}\n", INSTALL.read_text(), re.S | re.M)
    assert func is not None, "install.sh has no load_env_file()"
    env = tmp_path / "agent.env"
    env.write_text(env_text)
    marker = tmp_path / "ran"
    script = (func.group(0) + f'load_env_file "{env}"\n'
              + "".join(f'printf "%s\\n" "${{{n}-<unset>}}"\n' for n in names))
    out = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=10,
                         env={"PATH": f"{tmp_path}:/usr/bin:/bin", "MARK": str(marker)})
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), "a line of the environment file was run as a command"
    return out.stdout.splitlines(), out.stderr


def test_values_are_taken_as_written_like_systemd_does(tmp_path: Path) -> None:
    (tmp_path / "horse").write_text('#!/bin/sh\ntouch "$MARK"\n')
    (tmp_path / "horse").chmod(0o755)
    values, _ = load('MQTT_PASSWORD=correct horse battery\nZHIZAO_TOKEN=abc$def\n'
                     '# a comment\n; another\n\n  QUOTED = "x y"  \nSQ=\'$(touch "$MARK")\'\n',
                     tmp_path, "MQTT_PASSWORD", "ZHIZAO_TOKEN", "QUOTED", "SQ")
    assert values == ["correct horse battery", "abc$def", "x y", '$(touch "$MARK")']


def test_lines_that_are_not_assignments_are_named_and_skipped(tmp_path: Path) -> None:
    values, err = load("just words\n1X=2\nOK=1\n", tmp_path, "OK")
    assert values == ["1"] and "not KEY=VALUE" in err and "'1X' is not a variable name" in err
