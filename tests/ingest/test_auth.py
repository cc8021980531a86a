"""Tokens: hashed storage, scopes, revocation, and 401/403 before any body validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ingest.auth import Scope
from ingest.cli import _parser, main
from ingest.settings import load_settings
from ingest.testing import create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, batch, post, stored_count

ROOT = Path(__file__).resolve().parents[2]


def test_tokens_and_scopes(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    writer = create_token(settings, "agent-1", Scope.WRITE)
    reader = create_token(settings, "grafana", Scope.READ)
    admin = create_token(settings, "ops", Scope.ADMIN)
    # the previous token of agent-1, under another name: bound to agent-1 (a token writes only as
    # the producers it is bound to, by default its own name)
    revoked = create_token(settings, "old-agent", Scope.WRITE, producers=["agent-1"])
    stored = (tmp_path / "tokens.json").read_text()
    assert writer not in stored and reader not in stored  # only hashes are kept
    revoked_id = revoked.split("_")[1]
    with run_server(settings) as url, httpx.Client(base_url=url) as c:
        auth = {"authorization": f"Bearer {admin}"}
        # no token: 401 even for a malformed body (auth comes first), nothing stored
        r = c.post("/api/v1/batches", content=b"{garbage")
        assert_problem(r, 401, "missing token")
        assert "bearer" in r.headers["www-authenticate"].lower()
        assert_problem(post(c, batch("b-1")), 401)
        assert_problem(post(c, batch("b-1"), authorization="Bearer zz_nope_nope"), 401, "unknown token")
        # a read-only token cannot write
        assert_problem(post(c, batch("b-1"), authorization=f"Bearer {reader}"), 403, "needs write")
        r = c.post("/api/v1/batches", content=b"{garbage", headers={"authorization": f"Bearer {reader}"})
        assert_problem(r, 403)
        # a revoked token cannot write (revocation takes effect on the running server)
        assert post(c, batch("b-0"), authorization=f"Bearer {revoked}").status_code == 200
        assert main(["token", "revoke", revoked_id, "--config", str(_config(tmp_path))]) == 0
        r = post(c, batch("b-1"), authorization=f"Bearer {revoked}")
        assert_problem(r, 401, "revoked")
        assert stored_count(c, **auth) == 10
        # a write token writes but cannot read admin (nor data)
        assert post(c, batch("b-1"), authorization=f"Token {writer}").status_code == 200
        assert_problem(c.get("/api/v1/admin/tokens", headers={"authorization": f"Bearer {writer}"}), 403)
        assert_problem(c.get("/api/v1/catalogue", headers={"authorization": f"Bearer {writer}"}), 403)
        assert_problem(c.get("/api/v1/admin/tokens", headers={"authorization": f"Bearer {reader}"}), 403)
        # reader reads, admin lists tokens without secrets
        assert c.get("/api/v1/catalogue", headers={"authorization": f"Bearer {reader}"}).status_code == 200
        listed = c.get("/api/v1/admin/tokens", headers=auth).json()
        assert {t["name"] for t in listed} == {"agent-1", "grafana", "ops", "old-agent"}
        assert all("sha256" not in t for t in listed)
        assert stored_count(c, **auth) == 20
        metrics = c.get("/metrics").text
        assert 'zhizao_ingest_requests_rejected_total{reason="missing_scope",status="403"}' in metrics


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "ingest.toml"
    path.write_text(f'[auth]\ntokens_file = "{tmp_path / "tokens.json"}"\n')
    return path


def test_token_cli_create_list_revoke(tmp_path: Path, capsys: object) -> None:
    config = _config(tmp_path)
    assert main(["token", "create", "--name", "agent-9", "--scope", "write", "--scope", "read",
                 "--config", str(config)]) == 0
    out = capsys.readouterr()  # type: ignore[attr-defined]
    token = out.out.strip()
    assert token.startswith("zz_")
    doc = json.loads((tmp_path / "tokens.json").read_text())
    assert doc["tokens"][0]["scopes"] == ["read", "write"] and token not in json.dumps(doc)
    assert main(["token", "list", "--config", str(config)]) == 0
    listing = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "agent-9" in listing and "active" in listing
    assert main(["token", "revoke", "nope", "--config", str(config)]) == 1
    assert main(["token", "revoke", token.split("_")[1], "--config", str(config)]) == 0
    assert main(["token", "list", "--config", str(config)]) == 0
    assert "revoked" in capsys.readouterr().out  # type: ignore[attr-defined]
    bad = tmp_path / "bad.toml"
    bad.write_text("[auth]\nenabeld = true\n")
    assert main(["token", "list", "--config", str(bad)]) == 2


def _served_config(tmp_path: Path, tokens_file: str) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir(exist_ok=True)
    path = conf / "ingest.toml"
    path.write_text(f'[storage.duckdb]\npath = "{tmp_path / "ingest.duckdb"}"\n'
                    f'[auth]\nenabled = true\ntokens_file = "{tokens_file}"\n')
    return path


def _accepted_by_server(config: Path, token: str) -> bool:
    with run_server(load_settings(config)) as url, httpx.Client(base_url=url) as c:
        # the CLI's token is named agent-7, so it writes as producer agent-7
        return post(c, batch("b-1", producer="agent-7"), authorization=f"Bearer {token}").status_code == 200


def test_token_cli_honours_config_before_the_subcommand(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``zhizao ingest --config F token create`` writes F's tokens file, which the server reads."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = _served_config(tmp_path, str(tmp_path / "tokens.json"))
    assert main(["--config", str(config), "token", "create", "--name", "agent-7"]) == 0
    token = capsys.readouterr().out.strip()
    assert (tmp_path / "tokens.json").exists()
    assert not (work / "zhizao-tokens.json").exists()
    assert main(["--config", str(config), "token", "list"]) == 0
    assert "agent-7" in capsys.readouterr().out
    assert _accepted_by_server(config, token)
    assert main(["--config", str(config), "token", "revoke", token.split("_")[1]]) == 0
    assert "revoked" in capsys.readouterr().out
    # the option after the sub-command still wins over nothing, and serve keeps it too
    args = _parser().parse_args(["--config", str(config), "serve", "--port", "9"])
    assert (args.config, args.port) == (config, 9)
    args = _parser().parse_args(["serve", "--config", str(config)])
    assert (args.config, args.port, args.host) == (config, None, None)


def test_token_cli_relative_tokens_file_is_the_servers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative ``auth.tokens_file`` is taken against the working directory by ``token`` and by
    the server alike (documented in ingest/README.md)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = _served_config(tmp_path, "secrets/tokens.json")
    assert main(["token", "create", "--name", "agent-7", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    assert (work / "secrets" / "tokens.json").exists()
    assert _accepted_by_server(config, token)


def test_token_cli_list_without_tokens_file_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert main(["--config", str(config), "token", "list"]) == 1
    err = capsys.readouterr().err
    assert "no tokens file" in err and str(tmp_path / "tokens.json") in err
    assert main(["token", "revoke", "abcd", "--config", str(config)]) == 1
    assert "does not exist" in capsys.readouterr().err


def _zhizao(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command line, ``python -m zhizao ...``, in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "zhizao", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", ["", "   "])
def test_token_create_refuses_an_empty_name(tmp_path: Path, name: str) -> None:
    config = _config(tmp_path)
    done = _zhizao("ingest", "token", "create", "--name", name, "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2, done
    assert done.stdout == ""  # no token printed
    assert "--name must not be empty" in done.stderr
    assert not (tmp_path / "tokens.json").exists()


def test_token_create_refuses_the_name_of_an_active_token(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = _zhizao("ingest", "token", "create", "--name", "agent-7", "--config", str(config), cwd=tmp_path)
    assert first.returncode == 0, first
    token_id = first.stdout.strip().split("_")[1]
    again = _zhizao("ingest", "token", "create", "--name", "agent-7", "--scope", "read", "--config",
                    str(config), cwd=tmp_path)
    assert again.returncode == 2, again
    assert again.stdout == ""
    assert f"an active token named 'agent-7' already exists in {tmp_path / 'tokens.json'} (id {token_id})" \
        in again.stderr
    assert f"zhizao ingest token revoke {token_id}" in again.stderr
    listed = _zhizao("ingest", "token", "list", "--config", str(config), cwd=tmp_path)
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["agent-7"]
    # another name is fine; once revoked, the name may be issued again (rotation)
    assert _zhizao("ingest", "token", "create", "--name", "agent-8", "--config", str(config),
                   cwd=tmp_path).returncode == 0
    revoked = _zhizao("ingest", "token", "revoke", token_id, "--config", str(config), cwd=tmp_path)
    assert revoked.returncode == 0, revoked
    reissued = _zhizao("ingest", "token", "create", "--name", "agent-7", "--config", str(config),
                       cwd=tmp_path)
    assert reissued.returncode == 0, reissued
    names = [line.split("\t")[1] for line in
             _zhizao("ingest", "token", "list", "--config", str(config), cwd=tmp_path).stdout.splitlines()]
    assert sorted(names) == ["agent-7", "agent-7", "agent-8"]  # the revoked one and its successor


def test_token_create_refuses_control_characters_in_the_name(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert main(["token", "create", "--name", "agent\t7", "--config", str(config)]) == 2
    assert main(["token", "create", "--name", " agent-7", "--config", str(config)]) == 2
    assert not (tmp_path / "tokens.json").exists()
