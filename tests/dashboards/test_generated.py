"""The committed dashboard JSON is what the code generates, and it is structurally sound."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboards.cli import main
from dashboards.generate import GENERATED_DIR, boards, render, stale, write_all
from dashboards.structure import check_all, check_board


def test_committed_json_is_current() -> None:
    assert stale() == [], "run: zhizao dashboards generate"


def test_five_boards_with_plant_variables() -> None:
    docs = boards()
    assert list(docs) == ["zhizao-plant-overview", "zhizao-machine-detail", "zhizao-energy", "zhizao-quality",
                          "zhizao-edge-fleet"]
    for uid, doc in docs.items():
        names = [v["name"] for v in doc["templating"]["list"]]
        assert names[0] == "site", uid
        if uid != "zhizao-edge-fleet":
            assert names == ["site", "line", "machine"], uid


def test_generated_json_passes_the_structure_check() -> None:
    docs = {p.stem: json.loads(p.read_text()) for p in GENERATED_DIR.glob("*.json")}
    assert len(docs) == 5
    assert check_all(docs) == []
    for doc in docs.values():
        for panel in doc["panels"]:
            assert panel["fieldConfig"]["defaults"]["unit"]
            assert panel["datasource"]["uid"] == "zhizao-influxdb"
            assert all(t["query"].strip() for t in panel["targets"])


def test_structure_check_catches_each_defect() -> None:
    good = boards()["zhizao-energy"]
    defects: dict[str, Callable[[dict[str, Any]], Any]] = {
        "duplicated": lambda d: d["panels"][1].update(id=d["panels"][0]["id"]),
        "datasource": lambda d: d["panels"][0].update(datasource={"type": "influxdb", "uid": "other"}),
        "non-empty query": lambda d: d["panels"][0]["targets"][0].update(query=" "),
        "unit": lambda d: d["panels"][0]["fieldConfig"]["defaults"].pop("unit"),
        "undefined variable $plant": lambda d: d["panels"][0]["targets"][0].update(
            query=d["panels"][0]["targets"][0]["query"] + " AND $plant"),
        "overlaps": lambda d: d["panels"][1].update(gridPos=dict(d["panels"][0]["gridPos"])),
    }
    assert check_board(good) == []
    for needle, breaks in defects.items():
        doc = copy.deepcopy(good)
        breaks(doc)
        problems = check_board(doc)
        assert any(needle in p for p in problems), (needle, problems)


def test_stale_file_is_detected_and_generate_fixes_it(tmp_path: Path) -> None:
    write_all(tmp_path)
    assert stale(tmp_path) == []
    target = tmp_path / "zhizao-quality.json"
    doc = json.loads(target.read_text())
    doc["panels"][0]["title"] = "edited by hand"
    target.write_text(render(doc))
    (tmp_path / "zhizao-old.json").write_text("{}")
    assert sorted(stale(tmp_path)) == ["zhizao-old.json: no board generates it",
                                       "zhizao-quality.json: differs from the code"]
    assert main(["check", "--dir", str(tmp_path)]) == 1
    assert main(["generate", "--out", str(tmp_path)]) == 0
    assert stale(tmp_path) == []
    assert main(["check", "--dir", str(tmp_path)]) == 0


def test_provisioning_files_match_the_generated_boards() -> None:
    import yaml

    from dashboards.grafana import DATASOURCE_UID

    root = GENERATED_DIR.parent / "provisioning"
    ds = yaml.safe_load((root / "datasources" / "zhizao.yaml").read_text())["datasources"][0]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["url"] == "${ZHIZAO_INFLUX_URL}" and ds["jsonData"]["dbName"] == "${ZHIZAO_INFLUX_DATABASE}"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${ZHIZAO_INFLUX_TOKEN}"
    provider = yaml.safe_load((root / "dashboards" / "zhizao.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/zhizao/dashboards"


def test_web_sample_config_lists_every_option_with_its_default() -> None:
    import tomllib

    from dashboards.web import WebSettings
    from zhizao.config import load_config

    path = GENERATED_DIR.parent / "web" / "sample.toml"
    assert load_config(WebSettings, path) == WebSettings()
    assert set(tomllib.loads(path.read_text())) == set(WebSettings.model_fields)
