"""deploy/edge (review h71): the token steps leave a file the service can read, install.sh does not
start the unedited sample, the unit does not restart a config error forever.

install.sh's configuration and unit sections run for real (sh, sed, sha256sum, the real
``zhizao agent check-config``) in a temporary root, with stubs for what needs a real box: ``install``
(records owner/group, never writes outside the temporary root), ``systemctl`` and ``runuser``
(record their arguments)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "deploy" / "edge"
INSTALL = EDGE / "install.sh"
UNIT = EDGE / "zhizao-agent.service"


def unit_service() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_unit_does_not_restart_a_config_error_forever() -> None:
    """h71 #5: the agent unit lacked RestartPreventExitStatus=2; and RestartPreventExitStatus does not
    apply to ExecStartPre (systemd#11868), so the config is checked by the agent itself (exit 2)."""
    service = unit_service()
    assert service["RestartPreventExitStatus"] == ["2"]
    assert "ExecStartPre" not in service
    assert service["Restart"] == ["on-failure"]


def documented_token_commands() -> list[str]:
    found = []
    for readme in (ROOT / "edge_agent" / "README.md", EDGE / "README.md"):
        for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), re.S):
            text = block.replace("\\\n", " ")
            found += [line for line in text.splitlines() if "token create" in line and "agent.token" in line]
    return found


def test_the_documented_token_file_is_readable_by_the_service_user() -> None:
    """h71 #1: ``… > /etc/zhizao/agent.token; chmod 600`` as root left a file the service (User=zhizao)
    cannot read. The documented command writes it root:<the unit's group>, group-readable."""
    service = unit_service()
    (user,), (group,) = service["User"], service["Group"]
    commands = documented_token_commands()
    assert len(commands) >= 2, commands  # edge_agent/README.md and deploy/edge/README.md
    for line in commands:
        m = re.search(r"install -o (\S+) -g (\S+) -m (0?[0-7]{3,4}) /dev/stdin /etc/zhizao/agent.token", line)
        assert m is not None, line
        assert m.group(1) == "root" and m.group(2) == group and group == user
        mode = int(m.group(3), 8)
        assert mode & 0o040 and not mode & 0o007, oct(mode)  # group reads, others nothing
    for readme in (ROOT / "edge_agent" / "README.md", EDGE / "README.md"):
        code = re.findall(r"```sh\n(.*?)```", readme.read_text(), re.S)
        assert not any(re.search(r"chmod 0?600 /etc/zhizao/agent.token", block) for block in code)


class Box:
    """install.sh's configuration and unit sections in a temporary root."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.etc, self.state, self.prefix, self.units = tmp / "etc", tmp / "state", tmp / "opt", tmp / "units"
        for d in (self.etc, self.state, self.prefix / "venv" / "bin", self.units):
            d.mkdir(parents=True)
        self.log = tmp / "calls.log"
        stubs = tmp / "stubs"
        stubs.mkdir()
        self.stub(stubs / "install", f"""
echo "install $*" >> {self.log}
args=""
while [ $# -gt 0 ]; do
    case "$1" in -o|-g) shift 2 ;; *) args="$args $1"; shift ;; esac
done
set -- $args
for last; do :; done
case "$last" in {tmp}/*) ;; *) echo "stub install: refusing to write $last" >&2; exit 1 ;; esac
exec /usr/bin/install "$@"
""")
        self.stub(stubs / "systemctl", f'echo "systemctl $*" >> {self.log}')
        self.stub(stubs / "runuser", f"""
echo "runuser $*" >> {self.log}
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
""")
        self.stub(self.prefix / "venv" / "bin" / "python",
                  f'echo "{ROOT / "edge_agent" / "sample-agent.toml"}"')
        self.stub(self.prefix / "venv" / "bin" / "zhizao",
                  f'PYTHONPATH={ROOT} exec {sys.executable} -m zhizao "$@"')
        self.path = f"{stubs}:{os.environ['PATH']}"

    @staticmethod
    def stub(path: Path, body: str) -> None:
        path.write_text("#!/bin/sh\n" + body.lstrip("\n"))
        path.chmod(0o755)

    def run(self) -> subprocess.CompletedProcess[str]:
        text = INSTALL.read_text()
        section = text[text.index('echo "== configuration"'):]
        script = (f'PREFIX="{self.prefix}"\nETC="{self.etc}"\nSTATE="{self.state}"\nUNITDIR="{self.units}"\n'
                  f'HERE="{EDGE}"\n' + section)
        self.log.write_text("")
        return subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PATH": self.path})

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


def test_install_sh_writes_the_token_placeholder_and_starts_only_an_edited_config(tmp_path: Path) -> None:
    """h71 #1 and #3: the token file is created root:zhizao 0640 (a token written into it as root
    keeps that); the unedited sample (agent.id "cell-1", simulator endpoints, no token) is neither
    enabled nor started; once edited, the config is checked as the service user and it starts."""
    box = Box(tmp_path)
    first = box.run()
    assert first.returncode == 0, first.stderr
    calls = box.calls()
    token = box.etc / "agent.token"
    assert token.exists() and token.read_text() == ""
    assert f"install -o root -g zhizao -m 0640 /dev/null {token}" in calls, calls
    assert (box.units / "zhizao-agent.service").exists()
    started = ("systemctl enable", "systemctl restart", "systemctl start")
    assert not any(c.startswith(started) for c in calls), calls
    assert "still the sample" in first.stderr

    again = box.run()  # run again, config untouched: still not started, token kept
    assert again.returncode == 0 and "still the sample" in again.stderr
    assert not any(c.startswith(("systemctl enable", "systemctl restart")) for c in box.calls())

    config = box.etc / "agent.toml"
    edited = config.read_text().replace('id = "cell-1"', 'id = "press-7"')
    edited = edited.replace(f'state_dir = "{box.state}"', f'state_dir = "{box.state}"  # this box')
    config.write_text(edited.replace('# token_file = "/etc/zhizao/agent.token"', 'token = "${H77_TOKEN}"'))
    (box.etc / "agent.env").write_text("H77_TOKEN=zt_from_env\n")  # the unit's EnvironmentFile
    token.write_text("unused\n")
    third = box.run()
    assert third.returncode == 0, third.stderr
    calls = box.calls()
    assert "systemctl enable zhizao-agent.service" in calls
    assert "systemctl restart zhizao-agent.service" in calls
    assert any(c.startswith("runuser -u zhizao -- ") and "check-config" in c for c in calls), calls
    assert "started" in third.stdout and token.read_text() == "unused\n"

    (box.etc / "agent.env").unlink()  # the variable gone: the check fails, nothing (re)started
    fourth = box.run()
    assert "not started" in fourth.stderr and "H77_TOKEN" in fourth.stderr
    assert "systemctl restart zhizao-agent.service" not in box.calls()
