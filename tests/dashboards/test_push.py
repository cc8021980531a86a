"""``zhizao dashboards push`` through the real grafana-client against a Grafana API stand-in."""

from __future__ import annotations

import pytest

from dashboards.cli import main
from dashboards.generate import boards
from dashboards.push import InfluxSource, push
from tests.dashboards.conftest import serve
from tests.dashboards.grafana_stub import grafana_app
from tests.support.ports import free_port
from zhizao.errors import Rejected, Unavailable

TOKEN = "glsa_test_token"


def test_push_creates_datasource_and_folder_then_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    app = grafana_app(TOKEN)
    with serve(app) as url:
        argv = ["push", "--url", url, "--token", TOKEN, "--influx-url", "http://influxdb:8086",
                "--influx-token", "secret"]
        assert main(argv) == 0
        first = capsys.readouterr().out
        assert "datasource zhizao-influxdb: created" in first
        assert "folder zhizao: created" in first
        state = app.state.grafana
        assert set(state["dashboards"]) == set(boards())
        ds = state["datasources"]["zhizao-influxdb"]
        assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
        assert ds["secureJsonData"]["httpHeaderValue1"] == "Token secret"

        assert main(argv) == 0
        second = capsys.readouterr().out
        assert "datasource zhizao-influxdb: updated" in second and "folder zhizao: exists" in second
        assert len(state["datasources"]) == 1 and len(state["folders"]) == 1
        assert all(d["version"] == 2 and d["folderUid"] == "zhizao" for d in state["dashboards"].values())

        report = push(url, TOKEN, boards())  # no --influx-url: the existing datasource is left alone
        assert "datasource zhizao-influxdb: exists, left as is" in report.actions
        assert state["datasources"]["zhizao-influxdb"]["version"] == 2


def test_push_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(grafana_app(TOKEN)) as url:
        with pytest.raises(Rejected, match="401"):
            push(url, "wrong", boards(), influx=InfluxSource("http://influxdb:8086"))
        with pytest.raises(Rejected, match="--influx-url"):
            push(url, TOKEN, boards())  # no datasource yet and nothing to create it from
        assert main(["push", "--url", url, "--token", "wrong"]) == 1
        assert "refused the request (401)" in capsys.readouterr().err
    with pytest.raises(Unavailable, match="cannot reach Grafana"):
        push(f"http://127.0.0.1:{free_port()}", TOKEN, boards(), influx=InfluxSource("http://x"), timeout_s=2)
