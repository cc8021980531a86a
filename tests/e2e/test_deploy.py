"""What can be validated of deploy/ without a container engine: the compose file and the Kubernetes
manifests parse, reference only variables named in .env.example, files that exist, pinned images or
the image built from the repository's Dockerfile, commands the zhizao CLI has, and configs that the
components' own pydantic models accept; Grafana's provisioning paths match dashboards/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.kpi.config import load_kpi_config
from analytics.kpi_feed.config import TOKEN_ENV, load_feed_config
from analytics.scoring.service.config import load_service_config as load_scoring_config
from edge_agent.config import load_agent_config
from gateway.config import load as load_gateway_config
from ingest.settings import load_settings
from simulator.cli import build_parser as sim_parser
from zhizao.cli import COMMANDS
from zhizao.stack.expectations import load_play

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S_DIR = ROOT / "deploy" / "k8s"
VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
PINNED = re.compile(r"^[a-z0-9./_-]+:[0-9][A-Za-z0-9._-]*$")


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    return doc


def env_example() -> dict[str, str]:
    out = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def expand(text: str, env: dict[str, str]) -> str:
    return VAR.sub(lambda m: env[m.group(1)], text)


def binds(service: dict[str, Any]) -> list[tuple[Path, str]]:
    out = []
    for v in service.get("volumes", []):
        source, _, rest = v.partition(":")
        if source.startswith("."):
            out.append(((COMPOSE_DIR / source).resolve(), rest.split(":")[0]))
    return out


def test_every_variable_is_in_env_example_and_every_example_variable_is_used() -> None:
    text = (COMPOSE_DIR / "docker-compose.yml").read_text()
    used = set(VAR.findall(text))
    example = env_example()
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    assert set(example) <= used, f"unused in docker-compose.yml: {sorted(set(example) - used)}"
    assert all(example.values())


def test_images_are_pinned_or_built_from_the_dockerfile() -> None:
    env = env_example()
    for name, svc in compose()["services"].items():
        image = expand(svc["image"], env) if "image" in svc else ""
        assert PINNED.match(image), f"{name}: image {image!r} is not pinned to a version"
        if "build" in svc:
            assert (COMPOSE_DIR / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in re.findall(r"^COPY (\w+) \./", dockerfile, re.M):
        assert (ROOT / folder).is_dir(), folder


def test_bind_mounts_exist_and_long_running_services_have_healthchecks() -> None:
    for name, svc in compose()["services"].items():
        for source, _target in binds(svc):
            assert source.exists(), f"{name}: {source} does not exist"
        if svc.get("restart") != "no" and name != "tokens":
            assert "healthcheck" in svc, f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in compose()["services"]
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in compose()["services"][dep], f"{name} waits for {dep}'s health"


def _mounted(svc: dict[str, Any], target: str) -> Path:
    return next(src for src, tgt in binds(svc) if tgt == target)


def test_component_configs_are_valid_and_commands_exist() -> None:
    env = env_example()
    services = compose()["services"]
    for name in ("ingest", "gateway", "simulator", "agent"):
        cmd = [expand(str(a), env) for a in services[name]["command"]]
        assert cmd[0] in COMMANDS, f"{name}: zhizao has no command {cmd[0]}"
    ingest = services["ingest"]
    # the InfluxDB tokens are scoped ones issued at start (influx-tokens), never INFLUX_TOKEN: any value here
    settings = load_settings(_mounted(ingest, "/etc/zhizao/ingest.toml"),
                             env={"ZHIZAO_INGEST_INFLUX_TOKEN": "scoped-ingest-token"})
    assert settings.storage.backend == "influxdb" and settings.storage.influxdb.database == env[
        "ZHIZAO_INFLUX_DATABASE"]
    assert settings.host == "0.0.0.0" and settings.auth.enabled
    kpi = settings.extensions.kpi_config
    assert kpi is not None
    kpi_cfg, plant = load_kpi_config(_mounted(ingest, kpi))  # its plant file sits next to it, mounted too
    assert (_mounted(ingest, kpi).parent / kpi_cfg.plant) == _mounted(ingest, "/etc/zhizao/plant.toml")
    feed_svc = services["kpi-feed"]
    assert [expand(str(a), env) for a in feed_svc["command"]][:2] == ["analytics", "kpi-feed"]
    tokens_script = (COMPOSE_DIR / "influxdb" / "zhizao-tokens.sh").read_text()
    # its token: written into the volume it mounts at /run/zhizao-env
    assert f"issue kpi-feed {TOKEN_ENV} " in tokens_script
    assert "influx-token-kpi-feed:/run/zhizao-env:ro" in feed_svc["volumes"]
    feed = load_feed_config(_mounted(feed_svc, "/etc/zhizao/kpi-feed.toml"),
                            env={TOKEN_ENV: "scoped-feed-token"})
    # the same store as ingest's, but its own token
    assert feed.storage.influxdb.model_dump() == {**settings.storage.influxdb.model_dump(),
                                                  "timeout_s": feed.storage.influxdb.timeout_s,
                                                  "token": "scoped-feed-token"}
    assert feed.kpi_config == kpi and _mounted(feed_svc, kpi) == _mounted(ingest, kpi)
    assert feed.heartbeat_file is not None and feed.heartbeat_file in str(feed_svc["healthcheck"]["test"])
    gw = load_gateway_config(_mounted(services["gateway"], "/etc/zhizao/gateway.toml"))
    assert gw.broker.host == "mosquitto" and gw.uplink.http.url == f"http://ingest:{settings.port}"
    assert str(gw.uplink.http.token_file).startswith("/secrets/")
    agent, _ = load_agent_config(_mounted(services["agent"], "/etc/zhizao/agent.toml"))
    assert agent.uplink.type == "mqtt" and agent.uplink.host == "mosquitto"
    # plaintext on the compose network is a decision written in the file, not a warning at each start
    assert gw.plaintext_warnings() == [] and agent.plaintext_warnings() == []
    sim = services["simulator"]
    args = sim_parser().parse_args([expand(str(a), env) for a in sim["command"][1:]])
    scenario, _ = load_play(_mounted(sim, str(args.scenario)))
    opcua = next(c for c in agent.connectors if c.type == "opcua")
    assert opcua.endpoint == f"opc.tcp://simulator:{args.opcua_port}/zhizao/sim"
    assert opcua.browse[0].pattern.startswith(f"Objects/{scenario.site}/")
    assert {m.asset for m in plant.machines} == {str(a) for a, _ in scenario.machines()}


def test_grafana_provisioning_matches_dashboards() -> None:
    svc = compose()["services"]["grafana"]
    mounts = {tgt: src for src, tgt in binds(svc)}
    assert mounts["/etc/grafana/provisioning/datasources"] == ROOT / "dashboards/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == ROOT / "dashboards/provisioning/dashboards"
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/zhizao.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == ROOT / "dashboards/generated" and list(mounts[path].glob("*.json"))
    ds_text = (ROOT / "dashboards/provisioning/datasources/zhizao.yaml").read_text()
    code = "\n".join(line.split("#")[0] for line in ds_text.splitlines())
    # ZHIZAO_INFLUX_TOKEN: exported by the entry point from the file influx-tokens writes into its volume
    tokens_script = (COMPOSE_DIR / "influxdb" / "zhizao-tokens.sh").read_text()
    from_file = {"ZHIZAO_INFLUX_TOKEN"} if (
        "influx-token-grafana:/run/zhizao-env:ro" in svc["volumes"]
        and "issue grafana ZHIZAO_INFLUX_TOKEN " in tokens_script
        and svc["entrypoint"][:2] == ["/bin/sh", "/zhizao/entrypoint.sh"]) else set()
    for var in set(VAR.findall(code)):
        assert var in svc["environment"] or var in from_file, f"grafana lacks {var} for the datasource"
    ds = yaml.safe_load(ds_text)["datasources"][0]
    assert ds["uid"] == "zhizao-influxdb"


def k8s_docs() -> list[dict[str, Any]]:
    kust = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    docs = []
    for res in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S_DIR / res).read_text()) if d]
    return docs


def test_k8s_manifests_parse_and_reference_what_exists() -> None:
    kust = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    docs = k8s_docs()
    for d in docs:
        assert d["apiVersion"] and d["kind"] and d["metadata"]["name"]
    generated = {g["name"]: g["files"] for g in kust["configMapGenerator"]}
    for files in generated.values():
        for f in files:
            assert (K8S_DIR / f).resolve().is_file(), f
    boards = {Path(f).name for f in generated["grafana-dashboards"]}
    assert boards == {p.name for p in (ROOT / "dashboards/generated").glob("*.json")}
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    hpa = by_kind["HorizontalPodAutoscaler"]["ingest"]
    assert hpa["spec"]["scaleTargetRef"]["name"] in by_kind["Deployment"]
    assert by_kind["StatefulSet"]["emqx"]["spec"]["replicas"] >= 3
    gw_set = by_kind["StatefulSet"]["gateway"]
    assert gw_set["spec"]["replicas"] >= 2 and gw_set["spec"]["volumeClaimTemplates"]
    for d in docs:  # every ConfigMap a pod mounts is generated
        for vol in d.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in generated, vol
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert PINNED.match(c["image"]), c["image"]
            if c["image"].startswith("zhizao:"):
                assert c["args"][0] in COMMANDS


@pytest.mark.parametrize("name", ["ingest", "gateway", "scoring"])
def test_k8s_component_configs_are_valid(name: str, tmp_path: Path) -> None:
    path = K8S_DIR / "config" / f"{name}.toml"
    if name == "ingest":
        s = load_settings(path, env={"ZHIZAO_INGEST_INFLUX_URL": "http://influxdb:8181"})
        assert s.storage.backend == "influxdb" and s.auth.tokens_file.startswith("/secrets/")
    elif name == "scoring":
        cfg = load_scoring_config(path)
        assert cfg.ingest is not None
        assert cfg.ingest.url == "http://ingest:8080" and str(cfg.ingest.token_file).startswith("/secrets/")
        secret = yaml.safe_load((K8S_DIR / "secrets.example.yaml").read_text())["stringData"]
        assert Path(str(cfg.ingest.token_file)).name in secret
        assert cfg.sinks.mqtt is not None and cfg.sinks.mqtt.host == "emqx"
        for where in (cfg.registry, cfg.state_dir):  # on the pod's volume
            assert str(where).startswith("/var/lib/zhizao/")
    else:
        rendered = tmp_path / "gateway.toml"
        rendered.write_text(path.read_text().replace("@POD_NAME@", "gateway-0"))
        gw = load_gateway_config(rendered)
        assert gw.id == "gateway-0" and gw.broker.share_group and gw.broker.host == "emqx"
        assert gw.plaintext_warnings() == []  # in-cluster plaintext: decided in the file, with its reason
