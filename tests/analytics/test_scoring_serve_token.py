"""``zhizao analytics serve`` reads its ``[ingest] token_file`` before anything starts, ``--check``
included: a missing or empty file is a config error naming the key and the config (exit 2). It
passed ``--check`` and then stopped the service at start, blamed on "ingest.token_file" as if that
were the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.cli import main as analytics_main


def config(tmp_path: Path, token_file: Path) -> Path:
    path = tmp_path / "scoring.toml"
    path.write_text(f'scopes = ["plant1"]\n[ingest]\nurl = "http://127.0.0.1:9"\n'
                    f'token_file = "{token_file}"\n')
    return path


@pytest.mark.parametrize("state", ["missing", "empty", "unreadable-folder"])
def test_a_token_file_that_gives_no_token_is_refused_by_check_and_at_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], state: str) -> None:
    token = tmp_path / ("nowhere/token" if state == "unreadable-folder" else "token")
    if state == "empty":
        token.write_text("\n")
    path = config(tmp_path, token)
    for extra in (["--check"], []):
        assert analytics_main(["serve", "--config", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert f"invalid configuration in {path}" in err and "ingest.token_file" in err
        assert str(token) in err
        assert ("is empty" if state == "empty" else "cannot read") in err


def test_a_readable_token_file_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    path = config(tmp_path, token)
    assert analytics_main(["serve", "--config", str(path), "--check"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok")
