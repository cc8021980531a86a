"""KPI alert rules over a real DuckDB store: an empty scope covers every site, a one-shot
evaluation (``--watch --once``) honours ``for_s`` by replaying the rounds of its span, and a plant
file with overlapping shifts is refused (review 70)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from analytics.events import ThresholdRule
from analytics.kpi.alerts import KpiAlerter
from analytics.kpi.cli import main
from analytics.kpi.config import KpiConfig
from ingest.storage.base import SampleFrame
from ingest.storage.duckdb.store import DuckDBStore
from tests.analytics.kpi.test_engine import PLANT, T0, _shift
from zhizao.model import AssetPath, Sample
from zhizao.plant import PlantConfig
from zhizao.wire import format_ts

AT = T0 + timedelta(hours=1)


def _moved(site: str) -> list[Sample]:
    """The hand-made hour of ``p/a/l/m1`` (availability 0.8, OEE 0.117) on ``<site>/a/l/m1``."""
    m = AssetPath.parse(f"{site}/a/l/m1")
    return [Sample(m, s.signal, s.ts, s.value, quality=s.quality) for s in _shift()]


def _plant(*sites: str) -> PlantConfig:
    doc = PLANT.model_dump(mode="json")
    doc["machines"] = [{"asset": f"{s}/a/l/m1", "ideal_cycle_time_s": {"A": 10.0}} for s in sites]
    return PlantConfig.model_validate(doc)


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    """Sites p and q (both in the plant file) and r (only in the store), the same hour each."""
    path = tmp_path / "kpi.duckdb"
    async with DuckDBStore(str(path)) as store:
        await store.write(SampleFrame.from_samples(_shift() + _moved("q") + _moved("r")))
    return path


async def test_a_rule_without_scope_covers_every_machine_and_line_of_every_site(db: Path) -> None:
    """An empty scope used to read only the site of the plant file's first machine: q and r, with
    the same availability 0.8, never got an event."""
    rules = [ThresholdRule(name="a-low", kpi="availability", op="<", threshold=0.9),
             ThresholdRule(name="a-low-line", kpi="availability", op="<", threshold=0.9, level="line"),
             ThresholdRule(name="a-low-q", kpi="availability", op="<", threshold=0.9, scope="q")]
    al = KpiAlerter(rules)
    async with DuckDBStore(str(db)) as store:
        events = await al.evaluate(store, _plant("p", "q"), KpiConfig(), AT)
    got = sorted((e.rule, e.asset, e.state.value) for e in events)
    assert got == [("a-low", "p/a/l/m1", "open"), ("a-low", "q/a/l/m1", "open"),
                   ("a-low", "r/a/l/m1", "open"),
                   ("a-low-line", "p/a/l", "open"), ("a-low-line", "q/a/l", "open"),
                   ("a-low-line", "r/a/l", "open"),
                   ("a-low-q", "q/a/l/m1", "open")]
    assert all(e.value == pytest.approx(0.8) for e in events)
    assert al.unavailable == {}


def _events_file(tmp_path: Path, **rule: object) -> Path:
    path = tmp_path / "events.yaml"
    path.write_text(yaml.safe_dump({"interval_s": 60.0, "rules": [
        {"name": "oee-low", "kpi": "oee", "op": "<", "threshold": 0.6, **rule}]}))
    return path


def _plant_file(tmp_path: Path, plant: PlantConfig) -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(plant.model_dump(mode="json")))
    return path


def _once(db: Path, tmp_path: Path, at: str, capsys: pytest.CaptureFixture[str],
          **rule: object) -> tuple[list[dict[str, object]], str]:
    args = ["--duckdb", str(db), "--plant", str(_plant_file(tmp_path, _plant("p"))),
            "--watch", str(_events_file(tmp_path, scope="p", **rule)), "--once", "--at", at]
    assert main(args) == 0
    out, err = capsys.readouterr()
    return [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_once_opens_a_breach_held_for_for_s(db: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """OEE 0.117 < 0.6 over the hour ending at 07:00, and over every hour ending from 06:55 on: a
    rule with for_s = 300 opens its event from one ``--once`` run (it used to give 0 events, with no
    hint, for every rule of the sample config); start = 06:55, raised at 07:00."""
    events, err = _once(db, tmp_path, format_ts(AT), capsys, for_s=300.0, clear_after_s=300.0)
    (e,) = events
    assert (e["rule"], e["asset"], e["state"]) == ("oee-low", "p/a/l/m1", "open")
    assert e["start"] == "2026-11-23T06:55:00Z"
    assert e["details"]["raised_at"] == format_ts(AT)  # type: ignore[index]
    assert "1 events" in err and "pending" not in err


def test_once_names_a_breach_not_held_for_for_s_yet(db: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The shift starts at 06:00 and a window needs 600 s of planned time (min_planned_s) for a
    verdict: OEE is below 0.6 from the 06:10 round on. At 06:12 it has held 120 s of 300: no event,
    and stderr says so; at 06:15 it has held 300 s: the event opens, started 06:10."""
    events, err = _once(db, tmp_path, format_ts(T0 + timedelta(minutes=12)), capsys, for_s=300.0)
    assert events == []
    since = format_ts(T0 + timedelta(minutes=10))
    assert f"rule oee-low: p/a/l/m1 breached since {since}, held 120 s of its for_s 300 s: no event yet" \
        in err
    events, err = _once(db, tmp_path, format_ts(T0 + timedelta(minutes=15)), capsys, for_s=300.0)
    (e,) = events
    assert e["state"] == "open" and e["start"] == "2026-11-23T06:10:00Z"
    assert "no event yet" not in err


def test_replay_times() -> None:
    from analytics.kpi.alerts import replay_times

    assert replay_times(0.0, AT, 60.0) == [AT]
    assert replay_times(300.0, AT, 60.0) == [AT - timedelta(seconds=s) for s in (300, 240, 180, 120, 60, 0)]
    assert replay_times(90.0, AT, 60.0) == [AT - timedelta(seconds=90), AT - timedelta(seconds=30), AT]
    day = replay_times(86400.0, AT, 60.0)  # bounded: at most 60 rounds before --at
    assert len(day) == 61 and day[0] == AT - timedelta(days=1) and day[-1] == AT


def test_cli_refuses_a_plant_file_with_overlapping_shifts(db: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Overlapping shifts used to be accepted and their planned time counted twice (availability
    0.600 instead of 0.757 in the review's example, data quality ok): now exit 2 naming both."""
    doc = PLANT.model_dump(mode="json")
    doc["calendar"]["shifts"].append({"name": "second", "start": "06:30", "end": "08:00"})
    path = tmp_path / "overlap.yaml"
    path.write_text(yaml.safe_dump(doc))
    args = ["--duckdb", str(db), "--plant", str(path), "--scope", "p", "--from", format_ts(T0),
            "--to", format_ts(AT)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert ("calendar: shifts[0] 'early' (06:00:00-07:00:00) and shifts[1] 'second' (06:30:00-08:00:00) "
            "overlap every day") in err
