"""``zhizao sim generate --start/--duckdb`` and the KPI improvement recipe of simulator/README.md.

The recipe's commands run in-process (the CLI entry points ``zhizao sim`` and ``zhizao analytics
kpi`` use), on one simulated hour of each day instead of a shift; the improvement report's figures
are checked against the two runs' ledgers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.kpi.cli import main as kpi_main
from simulator.cli import main as sim_main
from simulator.ledger import read_ledger
from zhizao.wire import parse_ts

ROOT = Path(__file__).resolve().parents[2]
WORKSHOP = str(ROOT / "examples/workshop.toml")
IMPROVED = str(ROOT / "examples/improved.toml")
DAY = timedelta(days=1)
HOUR_S = 3600
# The recipe's times (simulator/README.md), with the periods cut to the hour simulated.
BASE_FROM, BASE_TO = "2026-11-23T08:00:00+08:00", "2026-11-23T09:00:00+08:00"
NEXT_DAY = "2026-11-24T08:00:00+08:00"
CUR_FROM, CUR_TO = NEXT_DAY, "2026-11-24T09:00:00+08:00"
PEAK_PRICE = 1.10
"""CNY/kWh of the examples' tariff from 08:00 to 11:00: all the energy of the hour simulated."""


def _sim(*args: str) -> int:
    return sim_main([*args])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _plant_totals(ledger: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(good parts, planned seconds of producing machines, kWh of every machine) of a run, from
    its ledger's line records (a line's planned time is its producing machines'; its energy all)."""
    lines = [r for r in ledger if r["type"] == "line_shift"]
    return (sum(r["good_count"] for r in lines), sum(r["planned_time_s"] for r in lines),
            sum(r["energy_kwh"] for r in lines))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The recipe: plant file, baseline hour, improved hour the next day (one DuckDB file), then
    the improvement report as JSON."""
    d = tmp_path_factory.mktemp("recipe")
    db, plant = d / "demo.duckdb", d / "plant.toml"
    assert _sim("export-plant", "--scenario", WORKSHOP, "--out", str(plant)) == 0
    assert _sim("generate", "--scenario", WORKSHOP, "--duration", str(HOUR_S),
                "--ledger", str(d / "baseline.jsonl"), "--duckdb", str(db)) == 0
    assert _sim("generate", "--scenario", IMPROVED, "--start", NEXT_DAY, "--duration", str(HOUR_S),
                "--ledger", str(d / "improved.jsonl"), "--duckdb", str(db)) == 0
    return {"dir": d, "db": db, "plant": plant,
            "baseline": read_ledger(d / "baseline.jsonl"), "improved": read_ledger(d / "improved.jsonl")}


def _report(recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    rc = kpi_main(["--duckdb", str(recipe["db"]), "--plant", str(recipe["plant"]), "--scope", "plant1",
                   "--baseline-from", BASE_FROM, "--baseline-to", BASE_TO,
                   "--from", CUR_FROM, "--to", CUR_TO, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    report: dict[str, Any] = json.loads(out)
    return report


def test_the_recipe_gives_an_improvement_report_that_agrees_with_the_ledgers(
    recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report(recipe, capsys)
    assert recipe["baseline"][0]["start"] == "2026-11-23T00:00:00.000000Z"
    assert recipe["improved"][0]["start"] == "2026-11-24T00:00:00.000000Z"
    assert [r["shift"] for r in recipe["improved"] if r["type"] == "line_shift"] == ["2026-11-24/early"] * 2
    rows = {m["metric"]: m for m in report["metrics"]}
    assert set(rows) == {"energy_efficiency", "operating_cost", "productivity"}
    for key, ledger in (("baseline", recipe["baseline"]), ("current", recipe["improved"])):
        good, planned_s, kwh = _plant_totals(ledger)
        # A skewed clock (pack-1, +90 s from 08:30) moves some of its last parts past the hour.
        assert rows["productivity"][key] == pytest.approx(good * 3600 / planned_s, rel=0.01), key
        assert rows["energy_efficiency"][key] == pytest.approx(kwh / good, rel=0.01), key
        assert rows["operating_cost"][key] == pytest.approx(PEAK_PRICE * kwh / good, rel=0.01), key
        total = report[f"{key}_total"]
        assert total["planned_time_s"] == pytest.approx(planned_s, abs=1.0), key
    # The improvement is the fixed air leak and shorter setups: less energy per part, not a target
    # met in every metric (the example is not tuned to meet them; README says so).
    assert rows["energy_efficiency"]["current"] < rows["energy_efficiency"]["baseline"]
    assert rows["operating_cost"]["current"] < rows["operating_cost"]["baseline"]


def test_the_same_run_is_not_loaded_twice(recipe: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """A store already holding the run's period is refused (exit 2) and left as it was."""
    before = _report(recipe, capsys)
    capsys.readouterr()
    rc = _sim("generate", "--scenario", WORKSHOP, "--duration", "60",
              "--ledger", str(recipe["dir"] / "again.jsonl"), "--duckdb", str(recipe["db"]))
    err = capsys.readouterr().err
    assert rc == 2
    assert "--duckdb" in err and "already holds samples of plant1/a1" in err
    assert _report(recipe, capsys) == before


def test_start_moves_every_sample_by_the_offset_and_nothing_else(tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("own", []), ("next", ["--start", NEXT_DAY]), ("next2", ["--start", NEXT_DAY])):
        assert _sim("generate", "--scenario", WORKSHOP, "--duration", "900", *extra, "--ledger",
                    str(tmp_path / f"{name}.ledger"), "--samples", str(tmp_path / f"{name}.jsonl")) == 0
        runs[name] = (tmp_path / f"{name}.jsonl").read_bytes(), (tmp_path / f"{name}.ledger").read_bytes()
    assert runs["next"] == runs["next2"]  # same seed and --start: byte-identical samples and ledger
    own, moved = _lines(tmp_path / "own.jsonl"), _lines(tmp_path / "next.jsonl")
    assert len(own) == len(moved) > 0
    for a, b in zip(own, moved, strict=True):
        assert parse_ts(b.pop("ts")) - parse_ts(a.pop("ts")) == DAY
        assert a == b
    own_l, moved_l = read_ledger(tmp_path / "own.ledger"), read_ledger(tmp_path / "next.ledger")
    times = ("start", "end", "shift")
    for a, b in zip(own_l, moved_l, strict=True):
        assert {k: v for k, v in a.items() if k not in times} == {
            k: v for k, v in b.items() if k not in times}
        if "start" in a:
            assert parse_ts(b["start"]) - parse_ts(a["start"]) == DAY


def test_samples_and_duckdb_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert _sim("generate", "--scenario", WORKSHOP, "--duration", "60", "--ledger", str(tmp_path / "l"),
                "--samples", str(tmp_path / "s.jsonl"), "--duckdb", str(db)) == 0
    n = len(_lines(tmp_path / "s.jsonl"))
    out = capsys.readouterr().out
    assert f"generated {n} samples from 2026-11-23T00:00:00.000000Z" in out
    assert f"{n} written to {db}" in out


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("tomorrow", "argument --start: not an ISO-8601 date-time with a UTC offset"),
        ("2026-11-24T08:00", "argument --start: '2026-11-24T08:00' has no UTC offset"),
        ("2026-11-24T08:00:00.5+08:00",
         "--start: 2026-11-24T00:00:00.500000+00:00: start must fall on the tick grid"),
    ],
)
@pytest.mark.usefixtures("asyncua_level_kept")
def test_a_bad_start_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start: str, says: str
) -> None:
    for cmd in (["generate", "--ledger", str(tmp_path / "l")], ["--no-opcua", "--speed", "max"]):
        rc = _sim(*cmd, "--scenario", WORKSHOP, "--duration", "5", "--start", start)
        assert rc == 2
        assert says in capsys.readouterr().err
    assert not (tmp_path / "l").exists()


@pytest.fixture
def asyncua_level_kept() -> Iterator[None]:
    """The live simulator's CLI quiets the ``asyncua`` logger of the process; run in-process here,
    it must not change what later tests of this worker log."""
    logger = logging.getLogger("asyncua")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("asyncua_level_kept")
def test_the_live_simulator_takes_start_too(tmp_path: Path) -> None:
    ledger = tmp_path / "live.jsonl"
    assert _sim("--scenario", WORKSHOP, "--no-opcua", "--speed", "max", "--duration", "5",
                "--start", NEXT_DAY, "--ledger", str(ledger)) == 0
    head = read_ledger(ledger)[0]
    assert parse_ts(head["start"]) == datetime.fromisoformat(NEXT_DAY)
