"""One version everywhere a release names it: an upgrade installs the new code only if its version
differs (pip keeps an installed ``zhizao==X`` when asked for ``X`` again, a node keeps a cached
image tag), so the version is bumped for each release and every pin follows it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import zhizao

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_the_installer_the_images_and_the_code_say_the_same_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert zhizao.__version__ == version
    install = (ROOT / "deploy" / "edge" / "install.sh").read_text()
    assert re.search(r"^ZHIZAO_VERSION=(\S+)$", install, re.M)[1] == version  # type: ignore[index]
    kustomize = (ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text()
    assert re.search(r"newTag: (\S+)", kustomize)[1] == version  # type: ignore[index]
    env = (ROOT / "deploy" / "compose" / ".env.example").read_text()
    assert re.search(r"^ZHIZAO_IMAGE=zhizao:(\S+)$", env, re.M)[1] == version  # type: ignore[index]
    for manifest in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        for tag in re.findall(r"image: zhizao:(\S+)", manifest.read_text()):
            assert tag == version, manifest.name
