"""Grafana panels against the simulator's ground truth, as Grafana would run them (the committed
``generated/*.json`` queries, variables resolved) on a real influxd filled through ingest's
InfluxDB store: ``examples/compact.yaml`` (seed 7, two 1-hour shifts) with a counter reset on
``line1/cnc-1`` at 20 min, the KPI feed run once at the end of the first shift.

* "Energy in range by machine" equals the energy used, across the reset, for the shift (the
  ledger) and for ranges that are no shift (the sum of the simulated power): ``spread`` (max - min)
  gave 5.18 kWh for cnc-1's 6.898.
* A machine that makes no parts (``comp-1``, a compressor) has no OEE / Performance / Quality /
  scrap / good-parts value in any panel (the feed used to write the definitions' 0 and 1: "OEE 0 %"
  in red), but still its availability and its energy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from analytics.kpi.config import KpiConfig
from analytics.kpi.engine import KPI_SIGNALS
from analytics.kpi_feed.feed import KpiFeed
from dashboards.generate import GENERATED_DIR
from dashboards.influxql import Resolution, resolve
from dashboards.verify import InfluxQL
from ingest.settings import InfluxSettings
from ingest.storage.base import SampleFrame
from ingest.storage.influxdb.store import InfluxStore
from simulator.engine import generate
from simulator.plant_export import plant_config
from simulator.scenario import Scenario
from tests.support.servers import InfluxDB
from zhizao.model import Sample
from zhizao.signals import ENERGY_KWH, POWER_KW

ROOT = Path(__file__).resolve().parents[2]
RESET_MACHINE = "cnc-1"
RESET_AT_S = 1200
MACHINES = ("cnc-1", "comp-1", "imm-1", "pack-1")
UTILITY = "comp-1"
PRODUCING = tuple(m for m in MACHINES if m != UTILITY)


@dataclass
class Truth:
    influx: InfluxDB
    scenario: Scenario
    samples: list[Sample]
    ledger: list[dict[str, Any]]


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Truth]:
    doc = yaml.safe_load((ROOT / "examples" / "compact.yaml").read_text())
    doc["faults"].append({"machine": f"line1/{RESET_MACHINE}", "kind": "counter_reset", "at": RESET_AT_S,
                          "duration_s": 60})
    sc = Scenario.model_validate(doc)
    g = generate(sc, 7, 7200)
    samples = [s for s in g if s.signal in KPI_SIGNALS]
    influx = InfluxDB(tmp_path_factory.mktemp("panels") / "influxdb")
    influx.start()
    try:
        async def fill() -> None:
            telemetry = InfluxSettings(url=influx.url, database="zhizao")
            kpi = InfluxSettings(url=influx.url, database="zhizao", measurement="zhizao_kpi")
            async with InfluxStore(telemetry) as store, InfluxStore(kpi) as sink:
                for i in range(0, len(samples), 50_000):
                    await store.write(SampleFrame.from_samples(samples[i:i + 50_000]))
                feed = KpiFeed(store, sink, plant_config(sc), KpiConfig(), ["plant1"])
                assert await feed.once(sc.start + timedelta(hours=1)) > 0  # end of the early shift

        asyncio.run(fill())
        yield Truth(influx, sc, samples, g.ledger)
    finally:
        influx.kill()


def panel_series(t: Truth, uid: str, title: str, start: datetime, end: datetime,
                 machine: str | None = None) -> list[dict[str, Any]]:
    """The series of the panel's (only) query over ``[start, end)`` (:func:`run_query`)."""
    panel = find_panel(uid, title)
    assert len(panel["targets"]) == 1, title
    return run_query(t, panel["targets"][0]["query"], start, end, machine)


def find_panel(uid: str, title: str) -> dict[str, Any]:
    doc = json.loads((GENERATED_DIR / f"{uid}.json").read_text())
    return next(p for p in doc["panels"] if p["title"] == title)


def run_query(t: Truth, query: str, start: datetime, end: datetime,
              machine: str | None = None) -> list[dict[str, Any]]:
    """``query`` as Grafana sends it, every machine of line1 selected as its multi-value *All* does
    (``(a|b|c)``, each escaped) unless ``machine`` is given."""
    variables = {"site": "plant1", "line": "line1", "machine": "ALLMACHINES"}
    every = "(" + "|".join(m.replace("-", r"\-") for m in MACHINES) + ")"
    text = resolve(query, Resolution(start, end, variables)).replace("ALLMACHINES", machine or every)
    client = InfluxQL(t.influx.url, "zhizao")
    try:
        series, error = client.run(text)
    finally:
        client.close()
    assert error is None, f"{error}\n{text}"
    return series


def by_machine(series: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in series:
        machine = s["tags"]["machine"]
        assert machine not in out, f"two series for {machine}"
        out[machine] = float(s["values"][-1][1])
    return out


def energy_from_power(t: Truth, machine: str, start: datetime, end: datetime) -> float:
    """kWh used in ``[start, end)``: the simulator adds ``power_kw * tick / 3600`` to the counter at
    every tick, after emitting both (so this is the counter's true growth, reset or not)."""
    tick = t.scenario.tick_s
    return sum(float(s.value) * tick / 3600.0 for s in t.samples
               if s.signal == POWER_KW and s.asset.machine == machine and start <= s.ts < end)


def tolerance(t: Truth, machine: str) -> float:
    """What the panel cannot see (``dashboards.influxql.counter_increase``): the range start to the
    first sample, the last sample to the range end and, per reset, the last sample before it to the
    first after — three sample intervals (the tick) at the machine's peak power; plus the ledger's
    rounding to 1e-6."""
    peak = max(float(s.value) for s in t.samples
               if s.signal == POWER_KW and s.asset.machine == machine)
    return 3 * peak * t.scenario.tick_s / 3600.0 + 1e-6


def test_the_data_holds_the_counter_reset(truth: Truth) -> None:
    values = [float(s.value) for s in truth.samples
              if s.signal == ENERGY_KWH and s.asset.machine == RESET_MACHINE]
    drops = [i for i in range(1, len(values)) if values[i] < values[i - 1]]
    assert drops == [RESET_AT_S], drops  # one reset, at 20 min; the counter restarts from 0
    assert values[RESET_AT_S] == 0.0 and values[RESET_AT_S - 1] > 1.0


def test_energy_in_range_equals_the_ledger_across_a_counter_reset(truth: Truth) -> None:
    start = truth.scenario.start
    end = start + timedelta(hours=1)
    got = by_machine(panel_series(truth, "zhizao-energy", "Energy in range by machine", start, end))
    ledger = {str(r["machine"]).rsplit("/", 1)[1]: float(r["energy_kwh"]) for r in truth.ledger
              if r["type"] == "shift" and str(r["shift"]).endswith("/early")}
    assert set(got) == set(MACHINES) == set(ledger)
    for machine in MACHINES:
        assert abs(got[machine] - ledger[machine]) <= tolerance(truth, machine), (machine, got, ledger)


@pytest.mark.parametrize(("from_s", "to_s"), [(630, 2835), (1800, 5400), (1199, 1202)])
def test_energy_in_range_is_right_for_any_range(truth: Truth, from_s: int, to_s: int) -> None:
    """Ranges that are no shift — inside one across the reset and the break, across the shift
    change, around the reset itself — against the power the machines drew (``kpi.shift.energy_kwh``
    could give none of them)."""
    start = truth.scenario.start + timedelta(seconds=from_s)
    end = truth.scenario.start + timedelta(seconds=to_s)
    got = by_machine(panel_series(truth, "zhizao-energy", "Energy in range by machine", start, end))
    assert set(got) == set(MACHINES)
    for machine in MACHINES:
        want = energy_from_power(truth, machine, start, end)
        assert abs(got[machine] - want) <= tolerance(truth, machine), (machine, got[machine], want)


def test_a_machine_making_no_parts_has_no_production_kpi_in_any_panel(truth: Truth) -> None:
    start = truth.scenario.start
    end = start + timedelta(hours=1, seconds=1)  # the feed's round is stamped at the shift end
    overview = "zhizao-plant-overview"
    oee = by_machine(panel_series(truth, overview, "OEE by machine (current shift)", start, end))
    assert set(oee) == set(PRODUCING), oee  # comp-1 showed 0 (red)
    factors: dict[str, set[str]] = {}
    for s in panel_series(truth, overview, "OEE factors by machine (current shift)", start, end):
        factors.setdefault(s["tags"]["machine"], set()).add(s["tags"]["signal"])
    assert factors[UTILITY] == {"kpi.shift.availability"}, factors  # performance showed 0, quality 1
    for m in PRODUCING:
        assert factors[m] == {"kpi.shift.availability", "kpi.shift.performance", "kpi.shift.quality"}
    for uid, title in (("zhizao-plant-overview", "OEE, rolling hour"),
                       ("zhizao-quality", "Scrap rate by machine (current shift)"),
                       ("zhizao-quality", "Scrap rate, rolling hour"),
                       ("zhizao-quality", "Scrapped parts (current shift)"),
                       ("zhizao-energy", "kWh per good part vs baseline and target"),
                       ("zhizao-energy", "Energy cost per good part")):
        for i, target in enumerate(find_panel(uid, title)["targets"]):
            machines = {s["tags"]["machine"] for s in run_query(truth, target["query"], start, end)}
            assert UTILITY not in machines, (title, target["refId"], machines)
            assert i > 0 or set(PRODUCING) <= machines, (title, machines)  # the panel does draw the others
    detail = panel_series(truth, "zhizao-machine-detail", "OEE (current shift)", start, end, machine=UTILITY)
    assert detail == [], detail  # the stat shows no value, not 0 %
    # what does apply to a compressor is still there
    idle = by_machine(panel_series(truth, "zhizao-energy", "Idle energy share (current shift)", start, end))
    assert UTILITY in idle and 0 < idle[UTILITY] < 1
    energy = by_machine(panel_series(truth, "zhizao-energy", "Energy in range by machine", start, end))
    assert energy[UTILITY] > 0
