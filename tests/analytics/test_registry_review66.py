"""Review 66: a machine whose asset level holds ``__`` (a valid level: ``press__1``) in the model
registry. The folder name is the scope with ``/`` as ``__``; reading the scope back from the folder
name turned ``press__1`` into ``press/1``, so ``models list`` refused every version as "copied or
renamed" and ``models promote`` failed with either spelling. The scope now comes from the
versions' ``metadata.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analytics.cli import main
from analytics.errors import ModelMismatch, RegistryError
from analytics.registry import ModelRegistry
from analytics.scoring.model import AnomalyModel
from tests.analytics.conftest import normal_rows

SCOPE = "plant1/a1/line1/press__1"  # valid_segment("press__1"): ingest stores such a machine
OTHER = "plant1/a1/line1/cnc-1"


def _fit(seed: int) -> AnomalyModel:
    return AnomalyModel().fit(normal_rows(500, 2, seed), columns=["a", "b"])


def _registry(tmp_path: Path) -> Path:
    reg = ModelRegistry(tmp_path / "models")
    for seed in (0, 1):
        reg.save(SCOPE, _fit(seed))
    reg.load(SCOPE)  # the scoring service's way (model_scope(asset)): loads
    return tmp_path / "models"


def test_models_list_does_not_refuse_a_valid_model(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reg = _registry(tmp_path)
    assert main(["models", "list", "--registry", str(reg)]) == 0
    out = capsys.readouterr().out
    assert "refused" not in out, out
    assert f"* {SCOPE} v0001" in out and f"  {SCOPE} v0002" in out, out


def test_a_valid_version_can_be_promoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models promote <scope as listed> 2` works (it did before the registry's scope check)."""
    reg = _registry(tmp_path)
    listed = ModelRegistry(reg).scopes()
    assert listed == [SCOPE]
    codes = {scope: main(["models", "promote", scope, "2", "--registry", str(reg)])
             for scope in {SCOPE, *listed}}
    err = capsys.readouterr().err
    assert 0 in codes.values(), (codes, err)
    assert ModelRegistry(reg).active(SCOPE) == "v0002"
    assert main(["models", "rollback", SCOPE, "--registry", str(reg)]) == 0
    assert ModelRegistry(reg).active(SCOPE) == "v0001"


def test_scopes_read_from_metadata_with_a_model_name_and_the_old_layout(tmp_path: Path) -> None:
    """A model name holding ``__`` too; the layout is unchanged (a registry written before reads
    the same); a folder whose metadata no version names falls back to the folder name."""
    reg = ModelRegistry(tmp_path / "models")
    energy = f"{SCOPE}#energy__v2"
    for scope in (SCOPE, energy, OTHER):
        reg.save(scope, _fit(0))
    assert (tmp_path / "models" / "plant1__a1__line1__press__1" / "v0001" / "metadata.json").exists()
    assert reg.scopes() == sorted([SCOPE, energy, OTHER])
    assert reg.load(energy).columns == ["a", "b"]
    broken = tmp_path / "models" / "plant1__a1__line1__pack-1" / "v0001"
    broken.mkdir(parents=True)
    (broken / "metadata.json").write_text("{not json")
    assert "plant1/a1/line1/pack-1" in reg.scopes()


def test_a_version_copied_in_from_another_scope_is_still_refused(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The folder's scope comes from its own versions, never from one copied in: the copy (even
    as the active version) is refused as such, and the scope is listed as itself."""
    reg = ModelRegistry(_registry(tmp_path))
    reg.save(OTHER, _fit(2))
    own, other = reg.root / "plant1__a1__line1__press__1", reg.root / "plant1__a1__line1__cnc-1"
    shutil.rmtree(own / "v0001")
    shutil.copytree(other / "v0001", own / "v0001")  # v0001 is the active one
    assert reg.scopes() == sorted([SCOPE, OTHER])
    with pytest.raises(ModelMismatch, match=rf"model {SCOPE} v0001 refused: its metadata.json says it is "
                                            rf"model {OTHER} v0001: the version folder was copied"):
        reg.load(SCOPE)
    assert main(["models", "list", SCOPE, "--registry", str(reg.root)]) == 0
    out = capsys.readouterr().out
    assert f"* {SCOPE} v0001 refused: its metadata.json says it is model {OTHER} v0001" in out, out
    assert f"  {SCOPE} v0002 robust_z" in out, out


def test_save_refuses_a_scope_whose_folder_holds_another_scopes_models(tmp_path: Path) -> None:
    """``plant1__a1/line1/press`` and ``plant1/a1/line1/press`` share a folder name: the second is
    refused rather than numbered among the first one's versions."""
    reg = ModelRegistry(tmp_path / "models")
    reg.save("plant1__a1/line1/press", _fit(0))
    with pytest.raises(RegistryError, match="holds the models of 'plant1__a1/line1/press'"):
        reg.save("plant1/a1/line1/press", _fit(1))
    assert reg.scopes() == ["plant1__a1/line1/press"]
    assert reg.versions("plant1__a1/line1/press") == ["v0001"]
    folder = tmp_path / "models" / "plant1__a1__line1__press"
    meta = json.loads((folder / "v0001" / "metadata.json").read_text())
    assert meta["scope"] == "plant1__a1/line1/press"
