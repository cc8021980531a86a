"""``[extensions]``: other components' routers mounted by ``zhizao ingest`` behind the read scope."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter

from ingest.api.deps import CanRead, StoreDep
from ingest.app import create_app
from ingest.auth import Scope
from ingest.cli import main
from ingest.extensions import configured_routers
from ingest.testing import create_token, run_server, server_settings
from zhizao import ConfigError


def test_fleet_router_mounted_behind_read_scope(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    settings.extensions.fleet = True
    reader = create_token(settings, "grafana", Scope.READ)
    app = create_app(settings, routers=configured_routers(settings))
    with run_server(settings, app=app) as url, httpx.Client(base_url=url) as c:
        assert c.get("/api/v1/agents").status_code == 401  # mounted, and guarded by the read scope
        assert c.get("/api/v1/nothing-here", headers={"authorization": f"Bearer {reader}"}).status_code == 404
        # (the answer of /api/v1/agents itself is gateway's to test)


def test_routers_argument_mounts_more_routes_with_ingest_deps(tmp_path: Path) -> None:
    router = APIRouter(prefix="/api/v1")

    @router.get("/machines-count")
    async def machines_count(store: StoreDep, _auth: CanRead) -> dict[str, int]:
        return {"machines": len({e.asset for e in await store.catalogue()})}

    settings = server_settings(tmp_path, auth=True)
    reader = create_token(settings, "grafana", Scope.READ)
    app = create_app(settings, routers=[router])
    with run_server(settings, app=app) as url, httpx.Client(base_url=url) as c:
        assert c.get("/api/v1/machines-count").status_code == 401
        r = c.get("/api/v1/machines-count", headers={"authorization": f"Bearer {reader}"})
        assert r.status_code == 200 and r.json() == {"machines": 0}


def test_only_the_web_dashboard_by_default(tmp_path: Path) -> None:
    routers = configured_routers(server_settings(tmp_path))
    assert [r.tags for r in routers] == [["web dashboard"]]
    settings = server_settings(tmp_path)
    settings.extensions.web = False
    assert configured_routers(settings) == []


def test_web_dashboard_served_at_root_by_zhizao_ingest_defaults(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    settings.extensions.web_options = {"title": "Line 7", "refresh_s": 2}
    app = create_app(settings, routers=configured_routers(settings))
    with run_server(settings, app=app) as url, httpx.Client(base_url=url) as c:
        page = c.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert c.get("/ui/config.json").json()["title"] == "Line 7"


def test_bad_web_options_name_the_key(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    settings.extensions.web_options = {"refresh_s": 0, "colour": "red"}
    with pytest.raises(ConfigError) as info:
        configured_routers(settings)
    assert {k for k, _ in info.value.problems} == {"refresh_s", "colour"}


def test_bad_kpi_config_is_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text(f'[extensions]\nkpi_config = "{tmp_path / "missing.toml"}"\n'
                      f'[auth]\ntokens_file = "{tmp_path / "tokens.json"}"\n')
    assert main(["--config", str(config)]) == 2
    assert "missing.toml" in capsys.readouterr().err
