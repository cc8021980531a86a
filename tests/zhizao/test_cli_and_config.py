"""The ``zhizao`` command and the config loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field, field_validator

from zhizao import ConfigError
from zhizao.cli import COMMANDS, main
from zhizao.config import StrictModel, load_config


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert "zhizao demo" in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["zhizao.cli", "zhizao"])
def test_console_script_runs(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "zhizao" in proc.stdout


class _Uplink(StrictModel):
    url: str
    batch_size: int = Field(1000, ge=1)


class _Agent(StrictModel):
    id: str
    uplink: _Uplink


def test_config_errors_name_every_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('id = 7\ncolour = "red"\n[uplink]\nbatch_size = 0\n')
    with pytest.raises(ConfigError) as info:
        load_config(_Agent, path)
    keys = {key for key, _ in info.value.problems}
    assert keys == {"id", "colour", "uplink.url", "uplink.batch_size"}
    assert "agent.toml" in str(info.value)


class _Shift(StrictModel):
    name: str

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a shift needs a name")
        return v


def test_a_validators_message_is_reported_as_written(tmp_path: Path) -> None:
    path = tmp_path / "shift.toml"
    path.write_text('name = " "\n')
    with pytest.raises(ConfigError) as info:
        load_config(_Shift, path)
    assert info.value.problems == [("name", "a shift needs a name")]  # not "Value error, a shift ..."


def test_config_syntax_errors_and_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("id = \n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(_Agent, bad)
    good = tmp_path / "ok.yaml"
    good.write_text("id: a1\nuplink:\n  url: http://x\n")
    assert load_config(_Agent, good).uplink.batch_size == 1000
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(_Agent, tmp_path / "missing.toml")


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """``zhizao analytics score F --out - | head``: the reader leaves early; exit 141 (as SIGPIPE
    would) and no BrokenPipeError traceback."""
    csv = tmp_path / "in.csv"
    rows = [f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d},{i % 7},{i % 5}" for i in range(3600)]
    csv.write_text("timestamp,a,b\n" + "\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "zhizao.cli", "analytics", "score", str(csv), "--out", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"timestamp,score")
    proc.stdout.close()  # as head does after its lines
    err = proc.stderr.read().decode()
    assert proc.wait(120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
