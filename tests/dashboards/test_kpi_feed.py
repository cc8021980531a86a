"""The KPI feed: naming and units of the series, the shift window, config errors, contributors,
failure handling against an unreachable store, and agreement with the KPI API on the filled stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest

from analytics.kpi.config import KpiConfig
from analytics.kpi_feed.config import load_feed_config
from analytics.kpi_feed.contributors import contributor_samples
from analytics.kpi_feed.feed import KpiFeed, record_samples, shift_window
from analytics.kpi_feed.runner import Runner
from ingest.settings import InfluxSettings
from ingest.storage.influxdb.store import InfluxStore
from tests.dashboards.conftest import Stack
from tests.dashboards.fill import FAULTY
from tests.support.ports import free_port
from zhizao.errors import ConfigError
from zhizao.events import Contributor, Event, EventSource
from zhizao.model import AssetPath
from zhizao.plant import PlantConfig, Shift, ShiftCalendar

TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_record_samples_names_units_and_derived_figures() -> None:
    record = {"oee": 0.5, "availability": 0.8, "good_count": 90, "total_count": 100, "planned_time_s": 3600.0,
              "ideal_time_s": 1800.0, "kwh_per_good_part": None, "energy_kwh": 12.5,
              "energy_by_state_kwh": {"running": 10.0, "idle": 2.5}, "scrap_by_product": {"clip-pa6": 3},
              "data_quality": {"ok": True}}
    asset = AssetPath.parse("p/a/l1/m1")
    got = {s.signal: (s.value, s.unit) for s in record_samples(asset, "shift", record, TS, baseline=0.4,
                                                               efficiency_pct=15.0)}
    assert got["kpi.shift.oee"] == (0.5, "ratio")
    assert got["kpi.shift.good_count"] == (90.0, None)
    assert got["kpi.shift.energy_kwh"] == (12.5, "kWh")
    assert got["kpi.shift.planned_time_s"] == (3600.0, "s")
    assert got["kpi.shift.energy_by_state_kwh.idle"] == (2.5, "kWh")
    assert got["kpi.shift.scrap_by_product.clip-pa6"] == (3.0, None)
    assert got["kpi.shift.plan_count"] == (200.0, None)  # 3600 s planned at 18 s per part
    assert got["kpi.shift.baseline_kwh_per_good_part"] == (0.4, "kWh")
    assert got["kpi.shift.target_kwh_per_good_part"][0] == pytest.approx(0.4 / 1.15)
    assert "kpi.shift.kwh_per_good_part" not in got  # None: no good part yet, nothing written
    assert not any("data_quality" in k for k in got)


def test_record_samples_leave_out_production_figures_of_a_machine_making_no_parts() -> None:
    """A compressor's record (``producing: false``) carries the definitions' OEE 0, Quality 1, 0
    parts: none of them is written (a panel would draw "OEE 0 %" in red); availability, times,
    energy and cost are. A producing machine's record of the same figures keeps them all."""
    record = {"producing": False, "availability": 0.9, "performance": 0.0, "quality": 1.0, "oee": 0.0,
              "first_pass_yield_ratio": 1.0, "scrap_ratio": None, "total_count": 0, "good_count": 0,
              "scrap_count": 0, "failures": 1, "planned_time_s": 3600.0, "run_time_s": 3240.0,
              "ideal_time_s": 0.0, "energy_kwh": 60.0, "energy_cost": 48.0,
              "good_parts_per_planned_hour": 0.0, "peak_kw": 75.0,
              "energy_by_state_kwh": {"running": 58.0, "idle": 2.0}, "idle_energy_share_ratio": 2 / 60,
              "scrap_by_product": {}}
    asset = AssetPath.parse("p/a/l1/comp-1")
    got = {s.signal for s in record_samples(asset, "shift", record, TS, baseline=0.4)}
    assert got == {f"kpi.shift.{n}" for n in (
        "availability", "failures", "planned_time_s", "run_time_s", "energy_kwh", "energy_cost", "peak_kw",
        "energy_by_state_kwh.running", "energy_by_state_kwh.idle", "idle_energy_share_ratio",
        "baseline_kwh_per_good_part", "target_kwh_per_good_part")}
    producing = {s.signal for s in record_samples(asset, "shift", {**record, "producing": True}, TS)}
    assert {f"kpi.shift.{n}" for n in ("oee", "performance", "quality", "first_pass_yield_ratio",
                                       "good_count", "total_count", "scrap_count",
                                       "good_parts_per_planned_hour")} <= producing


def test_shift_window_is_the_running_shift_or_the_last_one() -> None:
    plant = PlantConfig(calendar=ShiftCalendar(shifts=[Shift(name="early", start=time(8), end=time(16))]))
    assert shift_window(plant, TS) == (TS.replace(hour=8), TS)
    evening = TS.replace(hour=20)
    assert shift_window(plant, evening) == (TS.replace(hour=8), TS.replace(hour=16))
    assert shift_window(plant, TS.replace(hour=8)) is not None  # the previous day's shift
    thursdays = PlantConfig(calendar=ShiftCalendar(shifts=[Shift(name="x", start=time(8), end=time(16),
                                                                 weekdays=[3])]))
    assert shift_window(thursdays, TS) is None  # a Monday: the last Thursday shift is 4 days back


def test_config_names_each_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "feed.toml"
    bad.write_text('kpi_config = "kpi.toml"\nscopes = ["plant/x/y/z/w"]\ninterval_s = 0\n'
                   '[storage]\nbackend = "duckdb"\n')
    with pytest.raises(ConfigError) as err:
        load_feed_config(bad)
    keys = {k for k, _ in err.value.problems}
    assert {"scopes[0]", "interval_s", "storage"} <= keys, err.value.problems  # the bad element itself
    good = tmp_path / "ok.toml"
    good.write_text('kpi_config = "kpi.toml"\nscopes = ["plant1"]\n[storage]\nbackend = "influxdb"\n')
    cfg = load_feed_config(good)
    assert cfg.kpi_config == str(tmp_path / "kpi.toml")
    assert cfg.sink_settings().influxdb.measurement == "zhizao_kpi"
    assert cfg.storage.influxdb.measurement == "telemetry"


def test_contributors_of_the_latest_anomaly_per_machine() -> None:
    def ev(asset: str, minute: int, weights: dict[str, float]) -> Event:
        return Event(id=f"a:{asset}:{minute}", source=EventSource.ANOMALY, rule="m", asset=asset,
                     start=TS + timedelta(minutes=minute),
                     contributors=[Contributor(signal=s, weight=w) for s, w in weights.items()])
    events = [ev("p/a/l/m1", 0, {"old": 1.0}), ev("p/a/l/m1", 5, {"melt_temp": 0.7, "oil_temp": 0.3}),
              ev("p/a/l", 1, {"x": 1.0})]
    got = sorted((str(s.asset), s.signal, s.value) for s in contributor_samples(events, TS))
    assert got == [("p/a/l/m1", "anomaly.contrib.melt_temp", 0.7),
                   ("p/a/l/m1", "anomaly.contrib.oil_temp", 0.3)]


async def test_unreachable_store_fails_a_round_and_is_counted(tmp_path: Path) -> None:
    plant = PlantConfig(calendar=ShiftCalendar(shifts=[Shift(name="all", start=time(0), end=time(0))]))
    async with InfluxStore(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", timeout_s=1)) as store:
        runner = Runner(KpiFeed(store, store, plant, KpiConfig(), ["p"]), interval_s=1,
                        heartbeat=tmp_path / "alive")
        assert await runner.tick(TS) == 0
        assert (runner.rounds, runner.failures) == (1, 1)
        assert not (tmp_path / "alive").exists()  # a failed round is no sign of life
        runner.stop()
        await asyncio.wait_for(runner.run(), 5)  # stopped: returns after at most one more round


def test_feed_series_equal_the_kpi_api(stack: Stack) -> None:
    """The last ``kpi.shift.*`` values the feed wrote are the KPI API's answer for the same shift."""
    shift = shift_window(stack.filled.plant, stack.filled.end)
    assert shift is not None
    start, end = shift
    machine = AssetPath.parse(FAULTY)
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        report = client.get("/api/v1/kpis", params={"scope": machine.line_path, "from": start.isoformat(),
                                                   "to": end.isoformat(), "group_by": "machine"}).json()
    window = report["windows"][0]
    api = {m["machine"]: m for m in window["machines"]} | {f"{ln['line']}/line": ln for ln in window["lines"]}
    q = ('SELECT last("value") FROM "zhizao_kpi" '
         'WHERE "signal" =~ /^kpi\\.shift\\.(oee|good_count|energy_kwh)$/ '
         f"AND \"line\" = '{machine.line}' GROUP BY \"machine\", \"signal\"")
    body = json.loads(stack.influx.query(q, db="zhizao"))
    seen = set()
    for s in body["results"][0]["series"]:
        asset = f"{machine.site}/{machine.area}/{machine.line}/{s['tags']['machine']}"
        name = s["tags"]["signal"].rsplit(".", 1)[1]
        assert s["values"][0][1] == pytest.approx(api[asset][name], rel=1e-12, abs=1e-12), (asset, name)
        seen.add((asset, name))
    # every figure of every record, except the production figures of a machine making no parts
    # (comp-1: the API says producing false, and its OEE / good parts are no measurement)
    assert seen == {(a, n) for a, rec in api.items() for n in ("oee", "good_count", "energy_kwh")
                    if rec.get("producing") is not False or n == "energy_kwh"}
    assert FAULTY in api and any(rec.get("producing") is False for rec in api.values())


def test_sample_config_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "analytics" / "kpi_feed" / "sample.toml"
    cfg = load_feed_config(path)
    assert Path(cfg.kpi_config).exists(), cfg.kpi_config
    assert cfg.scopes == ["plant1"] and cfg.interval_s == 60 and cfg.output_measurement == "zhizao_kpi"


def test_feed_command_runs_rounds_against_the_stack(stack: Stack, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m analytics.kpi_feed`` end to end: config files loaded, both stores opened, a round
    written at the current time into ``zhizao_kpi``, the loop stopped from outside."""
    import threading

    from analytics.kpi_feed.__main__ import main
    from analytics.kpi_feed.runner import serve
    from simulator.plant_export import export_plant

    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read file" in capsys.readouterr().err
    export_plant(stack.filled.scenario, tmp_path / "plant.toml")
    (tmp_path / "kpi.toml").write_text('plant = "plant.toml"\n')
    (tmp_path / "feed.toml").write_text(
        f'kpi_config = "kpi.toml"\nscopes = ["plant1/a1/line1"]\ninterval_s = 1\n'
        f'heartbeat_file = "{tmp_path / "alive"}"\n'
        f'[storage]\nbackend = "influxdb"\n[storage.influxdb]\nurl = "{stack.influx.url}"\n')
    began = datetime.now(UTC)
    cfg = load_feed_config(tmp_path / "feed.toml")

    def run() -> None:
        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):  # the loop runs until stopped: stop it after 4 s
                await asyncio.wait_for(serve(cfg), 4)
        asyncio.run(bounded())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    producing = {"cnc-1", "cnc-2", "imm-1", "imm-2", "line"}
    every = producing | {"comp-1"}
    for signal, machines in (("kpi.shift.oee", producing), ("kpi.shift.availability", every)):
        q = (f"SELECT count(\"value\") FROM \"zhizao_kpi\" WHERE \"signal\" = '{signal}' "
             f"AND time >= '{began.isoformat()}' GROUP BY \"machine\"")
        series = json.loads(stack.influx.query(q, db="zhizao"))["results"][0]["series"]
        counts = {s["tags"]["machine"]: s["values"][0][1] for s in series}
        assert set(counts) == machines, signal  # comp-1 makes no parts: no OEE
        assert min(counts.values()) >= 1, counts  # written now, by this run
    assert (tmp_path / "alive").stat().st_mtime >= began.timestamp() - 1  # touched by a good round
