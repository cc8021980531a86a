"""The scoring service refuses a promoted model whose features do not match — the model's own,
the metadata's and the machine's — against real components: models trained by ``zhizao
analytics train`` from a DuckDB store the simulator filled (fault-free, seed 2), an hour of the
line (seed 1) in another DuckDB file, and the service opening that file itself (``[storage]``).

The review found the feature check comparing ``metadata.json``'s features with themselves: a
``metadata.json`` edited to bogus features, and another machine's version folder copied in, were
scored with. Each is now a ``model_mismatch`` naming what differs, and the machine is not scored.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.cli import main as analytics_main
from analytics.registry import ModelRegistry
from analytics.scoring.service import ScoringService, ServiceConfig
from ingest.storage.base import SampleFrame, SeriesQuery
from ingest.storage.duckdb.store import DuckDBStore
from simulator.engine import generate
from tests.analytics.test_model_lifecycle import fill_store, scenario, window
from tests.support.waiting import eventually
from zhizao.model import Sample

LINE = "plant1/a1/line1"
CNC, IMM, PACK, COMP = (f"{LINE}/{m}" for m in ("cnc-1", "imm-1", "pack-1", "comp-1"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with every machine's own model (v0001, active), trained on a fault-free hour."""
    tmp = tmp_path_factory.mktemp("train")
    ref = fill_store(tmp / "ref.duckdb", scenario().model_copy(update={"faults": []}))
    for asset in (CNC, IMM, PACK, COMP):
        argv = ["train", "--scope", asset, *window(), "--duckdb", str(ref), "--registry", str(tmp / "models")]
        assert analytics_main(argv) == 0
    return tmp / "models"


@pytest.fixture(scope="module")
def run() -> list[Sample]:
    return list(generate(scenario().model_copy(update={"faults": []}), 1, 3600))


def vdir(reg: Path, scope: str, version: str = "v0001") -> Path:
    return reg / scope.replace("/", "__") / version


def _config(tmp: Path, registry: Path) -> dict[str, Any]:
    storage = {"backend": "duckdb", "duckdb": {"path": str(tmp / "line.duckdb")}}
    return {"scopes": [LINE], "registry": str(registry), "state_dir": str(tmp / "state"), "interval_s": 0.1,
            "window_s": 60.0, "lateness_s": 5.0, "quiet_close_s": 1.0, "backfill_s": 7200.0,
            "registry_poll_s": 0.2, "storage": storage, "health": {"port": 0}}


def _end_us(samples: list[Sample]) -> int:
    last = max(s.ts for s in samples)
    return int((last.timestamp() // 60 + 1) * 60 * 1e6)


async def test_models_whose_features_do_not_match_are_refused_and_not_scored(
        tmp_path: Path, trained: Path, run: list[Sample]) -> None:
    """cnc-1: comp-1's version folder copied in as its v0001 (the review's case) — the metadata
    names comp-1. imm-1: comp-1's model planted with its metadata rewritten to imm-1 (consistent
    with the artifact, so only the machine can tell) — imm-1 has no air_flow nor outlet_pressure.
    pack-1: its own model with ``metadata.json``'s columns and features edited to bogus names —
    the artifact was fitted on others. comp-1, untouched, is scored; the others are not."""
    reg = tmp_path / "models"
    shutil.copytree(trained, reg)
    shutil.rmtree(vdir(reg, CNC))
    shutil.copytree(vdir(reg, COMP), vdir(reg, CNC))
    shutil.rmtree(vdir(reg, IMM))
    shutil.copytree(vdir(reg, COMP), vdir(reg, IMM))
    meta_path = vdir(reg, IMM) / "metadata.json"
    meta_path.write_text(meta_path.read_text().replace(COMP, IMM))
    meta_path = vdir(reg, PACK) / "metadata.json"
    doc = json.loads(meta_path.read_text())
    doc["columns"] = [f"bogus_{i}" for i in range(len(doc["columns"]))]
    doc["features"] = [f"bogus_{i}@mean5" for i in range(len(doc["features"]))]
    meta_path.write_text(json.dumps(doc))
    async with DuckDBStore(tmp_path / "line.duckdb") as s:
        await s.write(SampleFrame.from_samples(run))

    svc = ScoringService(ServiceConfig.model_validate(_config(tmp_path, reg)))
    task = asyncio.create_task(svc.run())

    def settled() -> bool:
        w = svc.workers.get(COMP)
        return (w is not None and w.state is not None and w.state.cursor_us >= _end_us(run)
                and all(scope in svc.workers and svc.workers[scope].status == "model_mismatch"
                        for scope in (CNC, IMM, PACK)))

    try:
        await eventually(settled, 90, "comp-1 scored and the three others refused")
    finally:
        svc.stop()
        await task
    ok, doc = svc.health()
    machines = {m["machine"]: m for m in doc["machines"]}
    assert not ok and doc["status"] == "degraded"
    assert sorted(f["machine"] for f in doc["failing"]) == [CNC, IMM, PACK]
    assert machines[COMP]["status"] == "ok" and machines[COMP]["model"] == "v0001"
    for scope in (CNC, IMM, PACK):
        assert machines[scope]["model"] is None, machines[scope]
    assert machines[CNC]["problem"].startswith(
        f"model {CNC} v0001 refused: its metadata.json says it is model {COMP} v0001: the version folder was "
        "copied")
    assert machines[IMM]["problem"].startswith(
        f"model {IMM} v0001 refused: machine {IMM} has no signal air_flow, outlet_pressure (the model reads "
        "air_flow, motor_current, oil_temp, outlet_pressure, power_kw, vibration_rms; the machine has "), \
        machines[IMM]["problem"]
    assert machines[PACK]["problem"].startswith(
        f"model {PACK} v0001 refused: metadata.json records other columns than the artifact was fitted with")
    assert "'bogus_0'" in machines[PACK]["problem"]

    start = scenario().start
    async with DuckDBStore(tmp_path / "line.duckdb") as s:
        scored = {scope: await s.query(SeriesQuery(asset=scope, start=start, end=start + timedelta(hours=2),
                                                   signals=("anomaly_score",)))
                  for scope in (CNC, IMM, PACK, COMP)}
    assert [len(x) for x in scored[COMP]] and len(scored[COMP][0]) > 1000
    assert scored[CNC] == scored[IMM] == scored[PACK] == []


async def test_a_refusal_for_missing_signals_is_lifted_when_a_usable_model_is_promoted(
        tmp_path: Path, trained: Path, run: list[Sample]) -> None:
    """imm-1's planted comp-1 model is refused; ``models promote`` of imm-1's own model (saved as
    v0002) is picked up live and imm-1 is scored to the end."""
    reg = tmp_path / "models"
    shutil.copytree(trained, reg)
    shutil.copytree(vdir(reg, IMM), vdir(reg, IMM, "v0002"))
    meta_path = vdir(reg, IMM, "v0002") / "metadata.json"
    meta_path.write_text(meta_path.read_text().replace('"version": "v0001"', '"version": "v0002"'))
    shutil.rmtree(vdir(reg, IMM))
    shutil.copytree(vdir(reg, COMP), vdir(reg, IMM))
    meta_path = vdir(reg, IMM) / "metadata.json"
    meta_path.write_text(meta_path.read_text().replace(COMP, IMM))
    async with DuckDBStore(tmp_path / "line.duckdb") as s:
        await s.write(SampleFrame.from_samples(run))
    cfg = _config(tmp_path, reg)
    cfg["scopes"] = [IMM]
    svc = ScoringService(ServiceConfig.model_validate(cfg))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: IMM in svc.workers and svc.workers[IMM].status == "model_mismatch", 30,
                         "imm-1's planted model refused")
        assert analytics_main(["models", "promote", IMM, "2", "--registry", str(reg)]) == 0
        assert ModelRegistry(reg).active(IMM) == "v0002"

        def scored() -> bool:
            w = svc.workers[IMM]
            return w.version == "v0002" and w.state is not None and w.state.cursor_us >= _end_us(run)

        await eventually(scored, 60, "imm-1 scored with its own model")
    finally:
        svc.stop()
        await task
    assert svc.workers[IMM].status == "ok"
