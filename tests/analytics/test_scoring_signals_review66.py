"""Review 66: the scoring service's machine-signal check when the machine has no data yet.

A model loaded while its machine had no data (nothing to check its signals against) was never
checked again: another machine's model planted in the scope waited as ``missing_signals`` for
good instead of being refused (``model_mismatch``). The worker now checks the loaded model when
the machine's signals appear or change."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from analytics.registry import ModelRegistry
from analytics.scoring.model import AnomalyModel
from analytics.scoring.service import ScoringService, ServiceConfig
from analytics.scoring.service.machine import MachineWorker
from analytics.scoring.service.source import StoreIO
from analytics.scoring.service.state import StateStore
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.conftest import normal_rows
from tests.analytics.test_scoring_service_model_checks import (  # noqa: F401 - fixtures
    COMP,
    IMM,
    _config,
    run,
    trained,
    vdir,
)
from tests.support.waiting import eventually
from zhizao.model import Sample


def _planted(tmp_path: Path, models: Path) -> Path:
    """The trained registry with comp-1's v0001 as imm-1's, its metadata naming imm-1."""
    reg = shutil.copytree(models, tmp_path / "models")
    imm = vdir(reg, IMM)
    shutil.rmtree(imm)
    shutil.copytree(vdir(reg, COMP), imm)
    (imm / "metadata.json").write_text((imm / "metadata.json").read_text().replace(COMP, IMM))
    return reg


async def test_a_planted_model_loaded_before_the_machine_has_data_is_never_checked(
        tmp_path: Path, trained: Path, run: list[Sample]) -> None:  # noqa: F811 - fixtures
    """imm-1 configured as a scope, comp-1's model planted as imm-1 v0001 (metadata rewritten to
    imm-1), the store still empty for imm-1 when the service starts (a fresh deployment, a new
    machine): the model is loaded unchecked (signals None). Once imm-1's data arrives the model
    (reading air_flow, outlet_pressure imm-1 lacks) is refused as README says."""
    async with DuckDBStore(tmp_path / "line.duckdb"):
        pass  # the store exists, without imm-1's data
    svc = ScoringService(ServiceConfig.model_validate({**_config(tmp_path, _planted(tmp_path, trained)),
                                                        "scopes": [IMM]}))
    task = asyncio.create_task(svc.run())
    try:
        await eventually(lambda: IMM in svc.workers and svc.workers[IMM].version == "v0001", 30,
                         "imm-1's planted model loaded while imm-1 has no data")
        io = svc.io
        assert isinstance(io, StoreIO)  # [storage]: the service's own store
        await io.store.write(SampleFrame.from_samples([x for x in run if str(x.asset) == IMM]))
        await eventually(lambda: svc.workers[IMM].status == "model_mismatch", 30,
                         "the planted model refused once imm-1's signals are known")
        await asyncio.sleep(1)  # several registry polls (0.2 s) and rounds later: still refused
        worker = svc.workers[IMM]
        status, problem, version = worker.status, worker.problem, worker.version
    finally:
        svc.stop()
        await task
    assert status == "model_mismatch", status
    assert version is None
    assert f"model {IMM} v0001 refused: machine {IMM} has no signal air_flow, outlet_pressure" in problem, \
        problem


def test_the_loaded_model_is_checked_when_the_signals_change_and_resumes_when_they_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No data: loaded unchecked. Signals lacking ``b``: refused (parked, ``model_mismatch``) without
    reloading; the same signals again: nothing redone. ``b`` appears: loaded and scoring again.
    More signals: checked (cheaply), nothing reloaded."""
    reg = ModelRegistry(tmp_path / "models")
    reg.save(IMM, AnomalyModel().fit(normal_rows(500, 2, 0), columns=["a", "b"]))
    loads: list[object] = []
    real_load = reg.load

    def load(*a: Any, **k: Any) -> AnomalyModel:
        loads.append(k.get("signals"))
        return real_load(*a, **k)

    monkeypatch.setattr(reg, "load", load)
    cfg = ServiceConfig.model_validate(_config(tmp_path, tmp_path / "models"))
    w = MachineWorker(IMM, cfg, reg, StateStore(tmp_path / "state"))
    w.refresh_model(None)
    assert (w.version, w.status, len(loads)) == ("v0001", "ok", 1)
    w.refresh_model(None)
    assert (w.version, len(loads)) == ("v0001", 1)
    w.refresh_model({"a"})
    assert (w.version, w.status, len(loads)) == (None, "model_mismatch", 1)
    assert w.problem.startswith(f"model {IMM} v0001 refused: machine {IMM} has no signal b (the model "
                                "reads a, b; the machine has a)"), w.problem
    for _ in range(3):
        w.refresh_model({"a"})
    assert (w.version, w.status, len(loads)) == (None, "model_mismatch", 1)
    w.refresh_model({"a", "b"})
    assert (w.version, w.status, w.problem) == ("v0001", "ok", "")
    assert loads[-1] == frozenset({"a", "b"}) and len(loads) == 2
    w.refresh_model({"a", "b", "c"})
    w.refresh_model({"a", "b", "c"})
    assert (w.version, w.status, len(loads)) == ("v0001", "ok", 2)
