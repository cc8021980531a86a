"""Model registry: versions, promote/rollback, refusing incompatible or tampered artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.cli import main
from analytics.errors import ModelMismatch, RegistryError
from analytics.registry import ModelRegistry, check_compatible, library_versions
from analytics.scoring import AnomalyModel
from tests.analytics.conftest import normal_rows

SCOPE = "plant1/press/line1/m1"


def model(seed: int = 0) -> AnomalyModel:
    return AnomalyModel().fit(normal_rows(300, 3, seed), columns=["vib", "temp", "current"])


def test_save_load_promote_rollback(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    m1 = reg.save(SCOPE, model(0), validation={"far": 0.01})
    assert m1.version == "v0001" and reg.active(SCOPE) == "v0001"
    assert m1.features == ["vib@mean5", "temp@mean5", "current@mean5"]
    assert m1.libraries["scikit-learn"] == library_versions()["scikit-learn"]
    m2 = reg.save(SCOPE, model(1))
    assert reg.active(SCOPE) == "v0001"  # a new version is not active until promoted
    reg.promote(SCOPE, m2.version)
    assert reg.active(SCOPE) == "v0002"
    loaded = reg.load(SCOPE, features=m2.features)
    assert loaded.threshold == pytest.approx(m2.threshold)
    assert reg.rollback(SCOPE) == "v0001" and reg.active(SCOPE) == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback(SCOPE)
    with pytest.raises(RegistryError, match="no version 'v0009'"):
        reg.promote(SCOPE, "v0009")
    assert reg.scopes() == [SCOPE] and reg.versions(SCOPE) == ["v0001", "v0002"]


def test_refuses_other_library_versions_and_features(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    meta = reg.save(SCOPE, model())
    other = dict(library_versions(), **{"scikit-learn": "0.24.2"})
    with pytest.raises(ModelMismatch, match=r"scikit-learn 1\.\d+\.\d+ was used to train it, "
                                            r"0\.24\.2 is installed"):
        check_compatible(meta, installed=other)
    with pytest.raises(ModelMismatch, match=r"missing \['current@mean5'\], unexpected \['power@mean5'\]"):
        reg.load(SCOPE, features=["vib@mean5", "temp@mean5", "power@mean5"])
    doc = (tmp_path / "plant1__press__line1__m1" / "v0001" / "metadata.json")
    doc.write_text(doc.read_text().replace(library_versions()["numpy"], "1.0.0"))
    with pytest.raises(ModelMismatch, match=r"numpy 1\.0\.0 was used to train it"):
        reg.load(SCOPE)


def test_refuses_a_tampered_artifact(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model())
    art = tmp_path / "plant1__press__line1__m1" / "v0001" / "model.joblib"
    art.write_bytes(art.read_bytes() + b"x")
    with pytest.raises(ModelMismatch, match="SHA-256"):
        reg.load(SCOPE)


@pytest.mark.parametrize("active", ["../../../tmp/evil", "v0001/../../x", "/etc", 7])
def test_a_version_read_from_active_json_must_be_a_version(tmp_path: Path, active: object) -> None:
    """``active.json`` is the registry's own file, but its names become paths: a hand-edited or
    planted ``"../.."`` is refused, not followed to an artifact elsewhere (security review L7)."""
    import json

    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model())
    (tmp_path / "plant1__press__line1__m1" / "active.json").write_text(
        json.dumps({"active": active, "history": ["v0001"]}))
    with pytest.raises(RegistryError, match="is not a model version"):
        reg.load(SCOPE)
    with pytest.raises(RegistryError, match="is not a model version"):
        reg.metadata(SCOPE, "../v0001")


def test_a_broken_active_json_is_named(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model())
    (tmp_path / "plant1__press__line1__m1" / "active.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"active\.json: cannot read"):
        reg.active(SCOPE)


@pytest.mark.parametrize("scope", ["plant1/../../x", "plant1/a b/l/m", "plant1/a\\b/l/m", "p/a/l/m\n"])
def test_a_scope_is_an_asset_path(tmp_path: Path, scope: str) -> None:
    with pytest.raises(RegistryError, match="invalid scope"):
        ModelRegistry(tmp_path).save(scope, model())


def test_models_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model(0))
    reg.save(SCOPE, model(1))
    r = ["--registry", str(tmp_path)]
    assert main(["models", "list", *r]) == 0
    out = capsys.readouterr().out
    assert f"* {SCOPE} v0001 robust_z" in out and f"  {SCOPE} v0002" in out
    assert main(["models", "promote", SCOPE, "v0002", *r]) == 0
    assert main(["models", "show", SCOPE, *r]) == 0
    assert '"version": "v0002"' in capsys.readouterr().out
    assert main(["models", "rollback", SCOPE, *r]) == 0
    assert "v0001 is active" in capsys.readouterr().out
    # the scope and version are the user's arguments: a wrong one is a usage error (2), listing the known
    for argv in (["show", "nope/x"], ["promote", "nope/x", "1"], ["rollback", "nope/x"]):
        assert main(["models", *argv, *r]) == 2
        assert f"no models for 'nope/x' in {tmp_path}; known scopes: {SCOPE}" in capsys.readouterr().err
    assert main(["models", "show", *r]) == 2
    assert f"needs a scope; known scopes: {SCOPE}" in capsys.readouterr().err
    assert main(["models", "promote", SCOPE, *r]) == 2
    assert "needs a version; 'plant1/press/line1/m1' has v0001, v0002" in capsys.readouterr().err
    assert main(["models", "promote", SCOPE, "9", *r]) == 2
    assert "no version '9'; versions: v0001, v0002" in capsys.readouterr().err


def test_models_list_of_an_unknown_scope_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``models list SCOPE`` for a scope without models: not an empty success but a usage error
    (exit 2, as ``show``/``promote``/``rollback`` and an unknown KPI scope), naming the scopes that
    have models; a known scope lists only its own versions."""
    r = ["--registry", str(tmp_path)]
    assert main(["models", "list", "plant1/press/line1/m9", *r]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert (f"no models for 'plant1/press/line1/m9' in {tmp_path}; "
            "known scopes: none (the registry is empty)") in out.err
    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model(0))
    reg.save(f"{SCOPE}#energy", model(1))
    assert main(["models", "list", "plant1/press/line1/m9", *r]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert (f"zhizao analytics models: SCOPE: no models for 'plant1/press/line1/m9' in {tmp_path}; "
            f"known scopes: {SCOPE}, {SCOPE}#energy") in out.err
    assert main(["models", "list", SCOPE, *r]) == 0
    assert capsys.readouterr().out.splitlines() == [f"* {SCOPE} v0001 robust_z rows=300 "
                                                    f"created={reg.metadata(SCOPE).created:%Y-%m-%dT%H:%M:%SZ}"]


@pytest.mark.parametrize("given", ["2", "v2", "v0002", "V02"])
def test_models_promote_takes_a_bare_number(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            given: str) -> None:
    reg = ModelRegistry(tmp_path)
    reg.save(SCOPE, model(0))
    reg.save(SCOPE, model(1))
    assert main(["models", "promote", SCOPE, given, "--registry", str(tmp_path)]) == 0
    assert f"{SCOPE}: v0002 is active" in capsys.readouterr().out and reg.active(SCOPE) == "v0002"
    assert main(["models", "show", SCOPE, "1", "--registry", str(tmp_path)]) == 0
    assert '"version": "v0001"' in capsys.readouterr().out


def test_registry_option_says_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("models", "train"):
        assert main([cmd, "--help"]) == 0
        assert "model registry directory (default zhizao-models)" in " ".join(capsys.readouterr().out.split())


def test_kpi_subcommand_dispatches_or_says_not_built(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["kpi", "--help"])
    err = capsys.readouterr().err
    assert rc == 0 or (rc == 2 and "not built yet" in err)
    assert main([]) == 2
