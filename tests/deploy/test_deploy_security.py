"""Security properties of deploy/ checked statically (each failed on the files before the review's
fixes): systemd hardening, Kubernetes securityContext / NetworkPolicies / broker authentication,
the compose stack's secret distribution (no operator token outside InfluxDB's own one-shot, no
anonymous broker on the published port, change-me refused), the edge installer's pinning."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
UNITS = sorted(DEPLOY.rglob("*.service"))

# What every zhizao unit sets (value, or None: present with any value).
HARDENING: dict[str, str | None] = {
    "NoNewPrivileges": "true",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "PrivateDevices": "true",
    "PrivateMounts": "true",
    "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true",
    "ProtectKernelLogs": "true",
    "ProtectControlGroups": "true",
    "ProtectClock": "true",
    "ProtectHostname": "true",
    "ProtectProc": "invisible",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "true",
    "RestrictRealtime": "true",
    "RestrictSUIDSGID": "true",
    "LockPersonality": "true",
    "RemoveIPC": "true",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": None,
    "UMask": "0027",
    "StateDirectory": "zhizao",
    "StateDirectoryMode": "0750",
    "ConfigurationDirectory": "zhizao",
    "ConfigurationDirectoryMode": "0750",
    "ReadWritePaths": "/var/lib/zhizao",
    "ReadOnlyPaths": "/etc/zhizao",
    "User": "zhizao",
}


def service_section(unit: Path) -> dict[str, list[str]]:
    """[Service] as name -> every value given (systemd allows repeats)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None, dict_type=dict)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    out: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_there_are_the_three_units() -> None:
    assert {u.name for u in UNITS} == {
        "zhizao-agent.service",
        "zhizao-gateway.service",
        "zhizao-scoring.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_unit_has_the_hardening_set(unit: Path) -> None:
    svc = service_section(unit)
    for key, value in HARDENING.items():
        assert key in svc, f"{unit.name}: no {key}="
        if value is not None:
            assert svc[key][-1] == value, f"{unit.name}: {key}={svc[key][-1]!r}, want {value!r}"
    assert "@system-service" in svc["SystemCallFilter"]
    assert "User" in svc and svc["User"] != ["root"]
    # the agent and the gateway share the same I/O code: no writable-executable memory for either
    if unit.name != "zhizao-scoring.service":
        assert svc.get("MemoryDenyWriteExecute") == ["true"], unit.name


def _verifiable_copy(unit: Path, folder: Path) -> Path:
    """The unit with ExecStart's /opt/zhizao/venv/bin/zhizao replaced by this checkout's venv (verify
    checks that the binaries exist)."""
    zhizao = shutil.which("zhizao") or str(ROOT / ".venv" / "bin" / "zhizao")
    copy = folder / unit.name
    copy.write_text(unit.read_text().replace("/opt/zhizao/venv/bin/zhizao", zhizao))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_analyze_verifies_and_rates_every_unit_ok(unit: Path, tmp_path: Path) -> None:
    copy = _verifiable_copy(unit, tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in security.stderr:  # systemd < 250
        pytest.skip("systemd-analyze security --offline needs systemd 250+")
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert level is not None, security.stdout + security.stderr
    assert float(level.group(1)) <= 2.0, security.stdout  # the old agent unit: 8.5 EXPOSED


def test_install_sh_pins_zhizao_builds_nothing_and_offers_hash_checking() -> None:
    text = (DEPLOY / "edge" / "install.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert f"ZHIZAO_VERSION={version.group(1)}\n" in code
    assert 'SPEC="${1:-zhizao==$ZHIZAO_VERSION}"' in code
    assert "--prefer-binary" not in code and "--no-binary" not in code  # never an sdist built as root
    installs = [line for line in code.splitlines() if 'pip" install' in line]
    assert installs and all("--only-binary=:all:" in line for line in installs), installs
    assert any("--require-hashes" in line for line in installs)
    assert "ZHIZAO_REQUIREMENTS" in code


# ---- Kubernetes ---------------------------------------------------------------------------------


def k8s_docs() -> list[dict[str, Any]]:
    kust = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for res in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S_DIR / res).read_text()) if d]
    return docs


def workloads() -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def test_every_pod_runs_as_non_root_with_runtime_default_seccomp() -> None:
    assert len(workloads()) == 6
    for d in workloads():
        pod = d["spec"]["template"]["spec"]
        sc = pod.get("securityContext") or {}
        name = d["metadata"]["name"]
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) > 0, name
        assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name


def test_every_container_has_the_restricted_security_context() -> None:
    for d in workloads():
        pod = d["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{d['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("privileged") and "add" not in sc.get("capabilities", {}), where


def test_network_policies_deny_by_default_and_cover_every_workload() -> None:
    policies = [d for d in k8s_docs() if d["kind"] == "NetworkPolicy"]
    default = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert default and "Ingress" in default[0]["spec"]["policyTypes"]
    allowed = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: p
        for p in policies
        if p["spec"]["podSelector"]
    }
    influx = allowed["influxdb"]["spec"]["ingress"]
    assert len(influx) == 1 and {
        f["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for f in influx[0]["from"]
    } == {"ingest", "grafana"}
    emqx_cluster = [r for r in allowed["emqx"]["spec"]["ingress"] if "from" in r]
    assert {p["port"] for r in emqx_cluster for p in r["ports"]} >= {4370, 18083}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_emqx_refuses_anonymous_clients_and_denies_what_its_acl_does_not_allow() -> None:
    emqx = next(d for d in workloads() if d["metadata"]["name"] == "emqx")
    env = _env(emqx["spec"]["template"]["spec"]["containers"][0])
    assert (
        "password_based" in env["EMQX_AUTHENTICATION"] and "built_in_database" in env["EMQX_AUTHENTICATION"]
    )
    assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    acl_path = re.search(r'path = "([^"]+)"', env["EMQX_AUTHORIZATION__SOURCES"])
    assert acl_path is not None
    acl = (K8S_DIR / "config" / Path(acl_path.group(1)).name).read_text()
    rules = [line for line in acl.splitlines() if line.startswith("{")]
    assert rules[-1] == "{deny, all}."
    assert not any(r.startswith("{allow, all, subscribe") or '"#"' in r for r in rules)


def test_k8s_grafana_gets_its_own_influx_token_and_secrets_are_checked_at_start() -> None:
    secret = yaml.safe_load((K8S_DIR / "secrets.example.yaml").read_text())["stringData"]
    grafana = next(d for d in workloads() if d["metadata"]["name"] == "grafana")
    pod = grafana["spec"]["template"]["spec"]
    token = _env(pod["containers"][0])["ZHIZAO_INFLUX_TOKEN"]["secretKeyRef"]["key"]
    assert token == "grafana-influx-token" and token in secret
    for d in workloads():
        pod = d["spec"]["template"]["spec"]
        keys = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for c in pod.get("initContainers", []) + pod["containers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        keys |= {
            i["key"] for v in pod.get("volumes", []) if "secret" in v for i in v["secret"].get("items", [])
        }
        keys &= {k for k, v in secret.items() if "change-me" in v}
        if not keys:
            continue
        checks = " ".join(" ".join(c.get("command", [])) for c in pod.get("initContainers", []))
        assert "change-me" in checks and "exit 1" in checks, d["metadata"]["name"]
        checked = {
            i["key"]
            for v in pod["volumes"]
            if v["name"] in ("check-secrets", "agents")
            for i in v["secret"]["items"]
        }
        checked |= {
            e["valueFrom"]["secretKeyRef"]["key"]
            for c in pod["initContainers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {}) and "change-me" in " ".join(c["command"])
        }
        assert keys <= checked, (d["metadata"]["name"], keys - checked)


def test_k8s_broker_passwords_come_from_the_secret_not_the_configmaps() -> None:
    for name in ("gateway", "scoring"):
        text = (K8S_DIR / "config" / f"{name}.toml").read_text()
        assert 'password = "@MQTT_PASSWORD@"' in text
        sts = next(d for d in workloads() if d["metadata"]["name"] == name)
        render = next(
            c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == "render-config"
        )
        assert "@MQTT_PASSWORD@" in " ".join(render["command"])
        assert _env(render)["MQTT_PASSWORD"]["secretKeyRef"]["key"] == f"mqtt-{name}-password"


# ---- compose ------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    return doc


def _uses(svc: dict[str, Any], var: str) -> bool:
    return f"${{{var}}}" in yaml.safe_dump(svc)


def test_only_influxdb_and_its_token_one_shot_get_the_operator_token() -> None:
    services = compose()["services"]
    holders = {name for name, svc in services.items() if _uses(svc, "INFLUX_TOKEN")}
    assert holders == {"setup", "influxdb", "influx-tokens"}  # setup: only checks it is not change-me
    assert services["influx-tokens"]["restart"] == "no" and "ports" not in services["influx-tokens"]
    for name in ("grafana", "ingest", "kpi-feed", "scoring"):
        env = services[name].get("environment") or {}
        assert not any("TOKEN" in k for k in env), (name, env)


def test_each_service_gets_only_its_own_scoped_influx_token() -> None:
    services = compose()["services"]
    script = (COMPOSE_DIR / "influxdb" / "zhizao-tokens.sh").read_text()
    issued: dict[str, str] = {}
    for m in re.finditer(r"^issue (\S+) (\S+) (\d+) (.*)$", script, re.M):
        issued[m.group(1)] = m.group(4)
    assert issued["grafana"] == '--read-bucket "${bucket_id}"'  # Grafana: read only
    for name in ("ingest", "kpi-feed"):
        assert issued[name] == '--read-bucket "${bucket_id}" --write-bucket "${bucket_id}"'
    assert "--all-access" not in script and "--operator" not in script
    mounts: dict[str, set[str]] = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            if v.startswith("influx-token-"):
                mounts.setdefault(v.split(":")[0], set()).add(name)
    assert mounts == {
        "influx-token-ingest": {"ingest", "influx-tokens"},
        "influx-token-kpi-feed": {"kpi-feed", "influx-tokens"},
        "influx-token-grafana": {"grafana", "influx-tokens"},
    }
    ds = (ROOT / "dashboards" / "provisioning" / "datasources" / "zhizao.yaml").read_text()
    assert "Token ${ZHIZAO_INFLUX_TOKEN}" in ds and "ZHIZAO_INFLUX_TOKEN" in script


def test_the_broker_has_no_anonymous_access_on_the_published_port() -> None:
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    lines = [line.split("#")[0].strip() for line in conf.splitlines()]
    lines = [line for line in lines if line]
    assert lines[0] == "per_listener_settings true"
    blocks: dict[str, list[str]] = {}
    current = ""
    for line in lines[1:]:
        if line.startswith("listener "):
            current = line.split()[1]
        blocks.setdefault(current, []).append(line)
    assert "allow_anonymous false" in blocks["1883"]
    assert any(line.startswith("password_file ") for line in blocks["1883"])
    assert any(line.startswith("acl_file ") for line in blocks["1883"])
    assert any(line.startswith("acl_file ") for line in blocks["1884"])  # the internal, anonymous one: ACL'd
    mosquitto = compose()["services"]["mosquitto"]
    assert [p.split(":")[-1] for p in mosquitto["ports"]] == ["1883"]
    acl = (COMPOSE_DIR / "mosquitto" / "acl").read_text()
    assert not re.search(r"^topic (readwrite |write )?#$", acl, re.M)
    assert mosquitto["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_mqtt_clients_authenticate_with_their_own_password_from_env() -> None:
    services = compose()["services"]
    own = {
        "agent": "MQTT_AGENT_PASSWORD",
        "gateway": "MQTT_GATEWAY_PASSWORD",
        "scoring": "MQTT_SCORING_PASSWORD",
    }
    for name, var in own.items():
        svc = services[name]
        assert svc["environment"]["MQTT_PASSWORD"] == f"${{{var}}}", name
        assert svc["entrypoint"] == ["/bin/sh", "/etc/zhizao/entrypoint.sh", "zhizao"]
        others = set(own.values()) - {var}
        assert not any(_uses(svc, o) for o in others), name
        config = COMPOSE_DIR / "config" / f"{name}.toml"
        assert config.read_text().count('password = "@MQTT_PASSWORD@"') >= 1
    setup = (COMPOSE_DIR / "setup" / "setup.sh").read_text()
    for user, var in (
        ("cell-1", "MQTT_AGENT_PASSWORD"),
        ("gw-plant1", "MQTT_GATEWAY_PASSWORD"),
        ("scoring", "MQTT_SCORING_PASSWORD"),
    ):
        assert f'mosquitto_passwd -b "$tmp" {user} "${var}"' in setup


def test_setup_refuses_change_me_before_anything_starts() -> None:
    services = compose()["services"]
    check = (COMPOSE_DIR / "setup" / "check-secrets.sh").read_text()
    example = (COMPOSE_DIR / ".env.example").read_text()
    placeholders = re.findall(r"^(\w+)=change-me", example, re.M)
    assert placeholders
    for var in placeholders:
        assert var in check, f"setup does not check {var}"
        assert services["setup"]["environment"][var] == f"${{{var}}}"
    # nothing that reads a secret starts before setup succeeded
    for name in ("mosquitto", "influxdb"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    for name in ("grafana", "ingest", "kpi-feed"):
        assert services[name]["depends_on"]["influx-tokens"]["condition"] == "service_completed_successfully"
    assert services["influx-tokens"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_install_sh_names_the_state_folder_in_the_config_it_writes(tmp_path: Path) -> None:
    """The sample's ``state_dir = "."`` means the unit's working directory; run from elsewhere
    (``sudo -u zhizao zhizao agent certs --config /etc/zhizao/agent.toml`` in the README) it would
    put certificates and buffer in the caller's folder. install.sh's edit of the sample names
    ``/var/lib/zhizao`` instead; the edited file is a valid agent config with that folder."""
    from edge_agent.config import load_agent_config

    text = (DEPLOY / "edge" / "install.sh").read_text()
    (edit,) = [line.strip() for line in text.splitlines() if line.strip().startswith('sed -i "s|^state_dir')]
    config = tmp_path / "agent.toml"
    config.write_text((ROOT / "edge_agent" / "sample-agent.toml").read_text())
    script = f"STATE=/var/lib/zhizao; {edit.replace('$ETC/agent.toml', str(config))}"
    subprocess.run(["bash", "-c", script], check=True)
    assert load_agent_config(config)[0].agent.state_dir == Path("/var/lib/zhizao")
