"""The model lifecycle against real components: models trained by ``zhizao analytics train`` from a
DuckDB store the simulator filled, then stored versions tampered with as a user review did — a
version folder copied from another machine or renumbered, ``metadata.json`` edited (features,
columns, library versions, an unknown key, cut short), an artifact with a byte appended — and what
``load``, ``models list|show|promote|rollback`` and ``train`` make of them; ``train``'s command-line
errors and ``eval sim`` run from another directory.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from analytics.cli import main
from analytics.errors import ModelMismatch
from analytics.registry import ModelRegistry
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from simulator.engine import generate
from simulator.scenario import FaultConfig, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
LINE = "plant1/a1/line1"
CNC, COMP = f"{LINE}/cnc-1", f"{LINE}/comp-1"


def scenario() -> Scenario:
    """The compact example line: cnc-1, imm-1, pack-1, comp-1."""
    return load_scenario(ROOT / "examples" / "compact.yaml")


def window() -> list[str]:
    """``train``'s options for the first hour of :func:`scenario`."""
    start = scenario().start
    return ["--from", start.isoformat(), "--to", (start + timedelta(hours=1)).isoformat()]


def fill_store(path: Path, line: Scenario, seed: int = 2) -> Path:
    """``path``: a DuckDB store holding an hour of ``line`` (simulated with ``seed``)."""

    async def write() -> None:
        async with DuckDBStore(path) as s:
            await s.write(SampleFrame.from_samples(list(generate(line, seed, 3600))))

    asyncio.run(write())
    return path


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An hour of the compact line without faults (seed 2)."""
    sc = scenario()
    return fill_store(tmp_path_factory.mktemp("clean") / "z.duckdb", sc.model_copy(update={"faults": []}))


@pytest.fixture(scope="module")
def drifting_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same hour with an air leak on comp-1 and bearing wear on imm-1 from minute 48: the
    last fifth of the history — the held-out rows — is not the regime the first four fifths are."""
    sc = scenario()
    faults = [FaultConfig(machine="line1/comp-1", kind="air_leak", at=2880, duration_s=1200,
                          params={"extra_power": 1.0}),
              FaultConfig(machine="line1/imm-1", kind="bearing_wear", at=2880, duration_s=1200,
                          params={"rate_per_h": 120.0})]
    return fill_store(tmp_path_factory.mktemp("drift") / "z.duckdb", sc.model_copy(update={"faults": faults}))


@pytest.fixture(scope="module")
def trained(clean_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry: cnc-1 v0001 (active) and v0002 (a shorter window), comp-1 v0001 (active)."""
    reg = tmp_path_factory.mktemp("reg") / "models"
    start = scenario().start
    shorter = ["--from", start.isoformat(), "--to", (start + timedelta(minutes=50)).isoformat()]
    for scope, when in [(CNC, window()), (CNC, shorter), (COMP, window())]:
        argv = ["train", "--scope", scope, *when, "--duckdb", str(clean_store), "--registry", str(reg)]
        assert main(argv) == 0
    return reg


@pytest.fixture
def reg(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained, tmp_path / "models")
    return tmp_path / "models"


def vdir(reg: Path, scope: str, version: str) -> Path:
    return reg / scope.replace("/", "__") / version


def edit(reg: Path, scope: str, at: str, **changes: object) -> None:
    """Change keys of version ``at``'s ``metadata.json`` (``numpy``: the recorded numpy version)."""
    p = vdir(reg, scope, at) / "metadata.json"
    doc = json.loads(p.read_text())
    for key, value in changes.items():
        if key == "numpy":
            doc["libraries"]["numpy"] = value
        else:
            doc[key] = value
    p.write_text(json.dumps(doc))


def models(reg: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["models", *argv, "--registry", str(reg)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---- 1: loading refuses what does not match ---------------------------------------------------


@pytest.mark.parametrize("field", ["features", "columns", "both"])
def test_load_refuses_metadata_that_does_not_describe_its_artifact(reg: Path, field: str) -> None:
    """The features recorded in ``metadata.json`` are compared with those the pickled model was
    fitted with — not with themselves (review: bogus names were scored with)."""
    registry = ModelRegistry(reg)
    meta = registry.metadata(CNC, "v0001")
    columns = ["bogus", *meta.columns[1:]]
    features = ["bogus@mean5", *meta.features[1:]]
    changes = {"features": {"features": features}, "columns": {"columns": columns},
               "both": {"features": features, "columns": columns}}[field]
    edit(reg, CNC, "v0001", **changes)
    with pytest.raises(ModelMismatch) as exc:
        registry.load(CNC)
    what = "columns" if field != "features" else "features"
    assert f"model {CNC} v0001 refused: metadata.json records other {what} than the artifact was fitted " \
           "with" in str(exc.value)
    assert "'bogus" in str(exc.value) and "'coolant_temp" in str(exc.value)


def test_load_refuses_a_version_folder_copied_from_another_machine_or_renumbered(reg: Path) -> None:
    """comp-1's v0001 copied in as cnc-1's v0001 (with ``active.json``) or as v0005, and cnc-1's
    own v0001 copied as v0005: refused naming what the metadata says — not scored with, and not
    blamed on the SHA-256."""
    registry = ModelRegistry(reg)
    shutil.rmtree(vdir(reg, CNC, "v0001"))
    shutil.copytree(vdir(reg, COMP, "v0001"), vdir(reg, CNC, "v0001"))
    with pytest.raises(ModelMismatch, match=rf"model {CNC} v0001 refused: its metadata.json says it is "
                                            rf"model {COMP} v0001: the version folder was copied"):
        registry.load(CNC)
    shutil.copytree(vdir(reg, CNC, "v0002"), vdir(reg, CNC, "v0005"))
    with pytest.raises(ModelMismatch, match=rf"model {CNC} v0005 refused: its metadata.json says it is "
                                            rf"model {CNC} v0002") as exc:
        registry.load(CNC, "v0005")
    assert "SHA-256" not in str(exc.value)


def test_load_names_every_problem_library_key_and_checksum(reg: Path) -> None:
    """Other library versions, a key this version does not know and an artifact changed since it
    was saved: one refusal naming all three."""
    edit(reg, CNC, "v0001", numpy="1.26.4", calibration={"k": 1})
    art = vdir(reg, CNC, "v0001") / "model.joblib"
    art.write_bytes(art.read_bytes() + b"\0")
    with pytest.raises(ModelMismatch) as exc:
        ModelRegistry(reg).load(CNC)
    text = str(exc.value)
    assert "numpy 1.26.4 was used to train it" in text
    assert "metadata.json has keys this zhizao" in text and "calibration" in text
    assert "model.joblib does not match the SHA-256 recorded in metadata.json" in text


# ---- 2: promote and rollback check first ------------------------------------------------------


@pytest.mark.parametrize("damage", ["numpy", "byte", "features", "copied"])
def test_promote_refuses_an_unusable_version_and_keeps_the_active_one(
        reg: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    registry = ModelRegistry(reg)
    if damage == "numpy":
        edit(reg, CNC, "v0002", numpy="1.26.4")
        reason = "numpy 1.26.4 was used to train it"
    elif damage == "byte":
        art = vdir(reg, CNC, "v0002") / "model.joblib"
        art.write_bytes(art.read_bytes() + b"x")
        reason = "model.joblib does not match the SHA-256"
    elif damage == "features":
        edit(reg, CNC, "v0002", features=["x@mean5"] * len(registry.metadata(CNC, "v0002").features))
        reason = "metadata.json records other features than the artifact was fitted with"
    else:
        shutil.rmtree(vdir(reg, CNC, "v0002"))
        shutil.copytree(vdir(reg, COMP, "v0001"), vdir(reg, CNC, "v0002"))
        reason = f"its metadata.json says it is model {COMP} v0001"
    rc, out, err = models(reg, capsys, "promote", CNC, "2")
    assert rc == 1 and out == ""
    assert err.startswith(f"zhizao analytics models: model {CNC} v0002 refused: ") and reason in err
    assert err.rstrip().endswith("not promoted: v0001 stays active") and len(err.splitlines()) == 1
    assert registry.active(CNC) == "v0001"


def test_rollback_refuses_an_unusable_previous_version(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = ModelRegistry(reg)
    assert models(reg, capsys, "promote", CNC, "2")[:2] == (0, f"{CNC}: v0002 is active\n")
    edit(reg, CNC, "v0001", numpy="1.26.4")
    rc, out, err = models(reg, capsys, "rollback", CNC)
    assert rc == 1 and out == "" and "numpy 1.26.4 was used to train it" in err
    assert "not rolled back: v0002 stays active" in err and registry.active(CNC) == "v0002"
    edit(reg, CNC, "v0001", numpy=registry.metadata(CNC, "v0002").libraries["numpy"])
    assert models(reg, capsys, "rollback", CNC)[:2] == (0, f"{CNC}: rolled back, v0001 is active\n")


# ---- 4: list and show with a broken version ---------------------------------------------------


def test_list_and_show_with_corrupt_metadata_and_unknown_keys(reg: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """One corrupt ``metadata.json`` no longer hides the healthy versions: ``list`` marks it with
    a one-line reason, ``show`` of it is a one-line error (exit 1). Keys a newer zhizao might
    write are listed and shown; the version is marked as one this installation refuses to load."""
    shutil.copytree(vdir(reg, CNC, "v0002"), vdir(reg, CNC, "v0003"))
    (vdir(reg, CNC, "v0003") / "metadata.json").write_text('{"scope": "x"\n')
    shutil.copytree(vdir(reg, CNC, "v0002"), vdir(reg, CNC, "v0004"))
    edit(reg, CNC, "v0004", version="v0004", calibration=[1, 2])
    shutil.copytree(vdir(reg, CNC, "v0002"), vdir(reg, CNC, "v0005"))
    edit(reg, CNC, "v0005", version="v0005", created="yesterday")
    rc, out, err = models(reg, capsys, "list")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["*", CNC, "v0001"], [CNC, "v0002", "robust_z"], [CNC, "v0003", "refused:"],
        [CNC, "v0004", "refused:"], [CNC, "v0005", "refused:"], ["*", COMP, "v0001"]]
    assert lines[2].endswith("v0003 refused: metadata.json: not valid JSON (EOF while parsing an object at "
                             "line 2 column 0)")
    assert "metadata.json has keys this zhizao" in lines[3] and "calibration" in lines[3]
    assert lines[4].endswith("v0005 refused: metadata.json: created: Input should be a valid datetime or "
                             "date, input is too short")

    rc, out, err = models(reg, capsys, "show", CNC, "3")
    assert rc == 1 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("zhizao analytics models: ")
    assert "v0003/metadata.json: not usable model metadata: not valid JSON" in err
    rc, out, err = models(reg, capsys, "show", CNC, "4")
    assert rc == 0 and json.loads(out)["calibration"] == [1, 2]
    assert err.startswith("warning: this installation refuses to load it: metadata.json has keys")
    rc, out, err = models(reg, capsys, "show", CNC, "2")
    assert rc == 0 and err == "" and json.loads(out)["version"] == "v0002"


def test_list_names_an_unreadable_active_pointer_and_still_lists(reg: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (reg / CNC.replace("/", "__") / "active.json").write_text("{not json")
    rc, out, _ = models(reg, capsys, "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"! {CNC}: ") and "active.json: cannot read" in lines[0]
    assert lines[1].startswith(f"  {CNC} v0001 robust_z") and lines[3].startswith(f"* {COMP} v0001")


# ---- 3: train activates only what passes its own check ----------------------------------------


def test_train_does_not_activate_a_version_that_fails_its_validation(
        drifting_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The review's case: an energy model flagging most of its own held-out history was made
    active as the first version, and ``train`` never said. Now it says, and it is not active
    unless ``--promote`` is given; a first version that passes is active, a later one is not."""
    reg = tmp_path / "models"
    base = ["--duckdb", str(drifting_store), "--registry", str(reg), *window()]
    energy = ["train", "--model", "energy", "--signals", "air_flow", "--scope", COMP, *base]
    capsys.readouterr()
    assert main(energy) == 0
    out = capsys.readouterr()
    assert "warning: the model flags" in out.err and "Check the window before promoting it" in out.err
    assert out.out.splitlines()[-1] == (
        f"{COMP}#energy: v0001 is saved, not active: it fails its validation (above); the scope has no "
        f"active model; to use it: zhizao analytics models promote {COMP}#energy 1 --registry {reg}")
    registry = ModelRegistry(reg)
    assert registry.active(f"{COMP}#energy") is None
    assert registry.metadata(f"{COMP}#energy", "v0001").validation["heldout_flag_rate"] > 0.2
    rc, listed, _ = models(reg, capsys, "list")
    assert rc == 0 and listed.startswith(f"  {COMP}#energy v0001 ")      # no '*': not active

    assert main([*energy, "--promote"]) == 0                              # asked for: active, still warned
    out = capsys.readouterr()
    assert out.out.splitlines()[-1] == f"{COMP}#energy: v0002 is active"
    assert "warning: the model flags" in out.err
    assert registry.active(f"{COMP}#energy") == "v0002"

    health = ["train", "--scope", CNC, *base]                             # cnc-1 runs clean: passes
    assert main(health) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{CNC}: v0001 is active"
    assert main(health) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"{CNC}: v0002 is saved, not active: v0001 stays active; to use it: zhizao analytics models promote "
        f"{CNC} 2 --registry {reg}")
    rc, out_text, err = models(reg, capsys, "promote", CNC, "2")
    assert (rc, out_text, err) == (0, f"{CNC}: v0002 is active\n", "")
    rc, out_text, err = models(reg, capsys, "promote", f"{COMP}#energy", "1")  # a suspect one: warned
    assert rc == 0 and "warning: the model flags" in err


# ---- 6: train's command line ------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "energy"], "--signals: the energy model needs its load signals, what power depends on "
                            "(e.g. --signals spindle_load); 'power_kw' is added as the target"),
    (["--model", "energy", "--signals", " , "], "--signals: the energy model needs its load signals"),
    (["--model", "energy", "--signals", "air_flow,power_kw"],
     "--signals: 'power_kw' is the energy model's target (--power-signal), not a load signal"),
    (["--signals", ","], "--signals: no signal named: ','"),
])
def test_train_option_errors_are_usage_errors_naming_the_option(
        clean_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
        message: str) -> None:
    capsys.readouterr()
    rc = main(["train", "--scope", COMP, *window(), "--duckdb", str(clean_store),
               "--registry", str(tmp_path / "models"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"zhizao analytics train: {message}"), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(("scope", "message"), [
    ("../../etc", "'../../etc' is not a machine's asset path: its site level '..' is not a name"),
    ("plant1/../etc/x", "'plant1/../etc/x' is not a machine's asset path: its area level '..' is not a name"),
    ("plant1/a1/line1/cnc 1", "its machine level 'cnc 1' is not a name"),
    ("plant1/a1/line1/cnc-1/x", "has 5 levels: a machine's asset path is site/area/line/machine"),
    ("plant1/a1/line1/cnc-1/", "its level 5 '' is not a name"),
    ("plant1/a1/line1", "'plant1/a1/line1' is a line: a model is trained per machine; give its asset path "
                        "site/area/line/machine (e.g. plant1/a1/line1/<machine>)"),
])
def test_train_refuses_a_scope_that_is_not_a_machine_path(
        clean_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], scope: str,
        message: str) -> None:
    capsys.readouterr()
    rc = main(["train", "--scope", scope, *window(), "--duckdb", str(clean_store),
               "--registry", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("zhizao analytics train: --scope: ") and message in err, err
    assert "(e.g. ../../etc" not in err


# ---- 5: eval sim from anywhere ----------------------------------------------------------------


def test_eval_sim_finds_its_scenario_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Run from another directory, ``eval sim`` finds the example scenario from the package (as
    ``zhizao demo`` does its own); a wrong ``--seeds`` is reported before any file is read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.toml").write_text("shift_hours = 0.05\nreference_hours = 0.1\n")
    capsys.readouterr()
    assert main(["eval", "sim", "--seeds", "a,b", "--scenario", "missing.toml"]) == 2
    err = capsys.readouterr().err
    assert err == "zhizao analytics eval: --seeds: comma-separated integers expected: 'a,b'\n"
    assert main(["eval", "sim", "--seeds", ","]) == 2
    assert "--seeds: no seed given" in capsys.readouterr().err
    assert main(["eval", "sim", "--seeds", "1", "--config", "quick.toml"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out.splitlines()[-1])
    assert summary["seeds"] == [1] and summary["machine_shifts"] == 9, out   # workshop.toml: 9 machines
