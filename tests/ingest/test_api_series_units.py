"""``GET /api/v1/series`` never mixes units in one series: a signal reported in two units, or whose
unit changed in the range, comes as one series per unit, each labelled with its unit — raw and
bucketed, on both backends (real uvicorn; DuckDB file, real influxd)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, T0
from zhizao.model import Batch, Sample
from zhizao.wire import encode_batch, format_ts


@pytest.mark.parametrize("backend", ["duckdb", "influxdb"])
def test_series_come_apart_by_unit(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    settings = server_settings(tmp_path, backend=backend)
    if backend == "influxdb":
        server = request.getfixturevalue("influxdb")
        settings.storage.influxdb.url = server.url
        settings.storage.influxdb.database = server.database
    # the same signal: kW for 10 s, then the device switched to W (the reported case); one sample
    # without a unit
    samples = ([Sample(M1, "power", T0 + timedelta(seconds=i), float(i), "kW") for i in range(10)]
               + [Sample(M1, "power", T0 + timedelta(seconds=i), i * 1000.0, "W") for i in range(10, 20)]
               + [Sample(M1, "power", T0 + timedelta(seconds=25), 7.0, None)])
    params: dict[str, Any] = {"asset": str(M1), "signal": "power", "start": format_ts(T0),
                              "end": format_ts(T0 + timedelta(minutes=1)), "epoch": "ms"}
    with run_server(settings) as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v1/batches", content=encode_batch(Batch("agent-1", "b-1", 1, tuple(samples)),
                                                           version=2))
        assert r.status_code == 200 and r.json()["accepted"] == 21, r.text
        raw = c.get("/api/v1/series", params=params).json()["series"]
        mean = c.get("/api/v1/series", params={**params, "agg": "mean", "bucket": "30s"}).json()["series"]
    t0 = int(T0.timestamp() * 1000)
    assert [(s["signal"], s["unit"], len(s["values"])) for s in raw] == [
        ("power", None, 1), ("power", "W", 10), ("power", "kW", 10)]
    assert raw[1]["values"] == [i * 1000.0 for i in range(10, 20)]
    assert raw[2]["ts"] == [t0 + i * 1000 for i in range(10)]
    assert raw[2]["values"] == [float(i) for i in range(10)]
    assert [(s["unit"], s["ts"], s["values"]) for s in mean] == [
        (None, [t0], [7.0]), ("W", [t0], [14500.0]), ("kW", [t0], [4.5])]
