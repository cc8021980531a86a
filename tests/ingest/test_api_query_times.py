"""Times in the read API's query strings agree with the command line's (``zhizao/timeargs.py``):
a plain date ``2026-11-23`` is midnight UTC in ``GET /api/v1/series`` and ``GET /api/v1/events``
as in ``zhizao analytics ... --from 2026-11-23`` (it was refused with the hint "append 'Z'", and
``2026-11-23Z`` was refused too); a date-time without an offset is still refused, with a hint whose
every suggestion is accepted. Real uvicorn, DuckDB file and a real influxd."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.testing import run_server, server_settings
from tests.ingest.conftest import M1, T0
from zhizao.events import Event, EventSource
from zhizao.model import Batch, Sample
from zhizao.timeargs import parse_time
from zhizao.wire import encode_batch, format_ts

DAY = T0.date().isoformat()  # 2026-11-23; T0 is 08:00 UTC that day
NEXT = (T0.date() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize("backend", ["duckdb", "influxdb"])
def test_plain_dates_are_midnight_utc_as_on_the_command_line(tmp_path: Path, request: pytest.FixtureRequest,
                                                             backend: str) -> None:
    settings = server_settings(tmp_path, backend=backend)
    if backend == "influxdb":
        server = request.getfixturevalue("influxdb")
        settings.storage.influxdb.url = server.url
        settings.storage.influxdb.database = server.database
    # one sample at 23:59:59 the day before (outside the day), three on the day, one at next midnight
    midnight = T0.replace(hour=0)
    times = [midnight - timedelta(seconds=1), midnight, T0, T0.replace(hour=23, minute=59),
             midnight + timedelta(days=1)]
    samples = tuple(Sample(M1, "power_kw", ts, float(i), "kW") for i, ts in enumerate(times))
    event = Event(id="kpi:ev-1", source=EventSource.KPI, rule="oee_low", asset=str(M1), start=T0)
    with run_server(settings) as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v1/batches", content=encode_batch(Batch("agent-1", "b-1", 1, samples)))
        assert r.status_code == 200 and r.json()["accepted"] == 5, r.text
        assert c.post("/api/v1/events", json=event.model_dump(mode="json")).status_code == 200

        def series(start: str, end: str) -> httpx.Response:
            return c.get("/api/v1/series", params={"asset": str(M1), "start": start, "end": end})

        by_date = series(DAY, NEXT)
        assert by_date.status_code == 200, by_date.text
        got: Any = by_date.json()["series"]
        assert got[0]["values"] == [1.0, 2.0, 3.0]  # [00:00Z, next 00:00Z): the day, in UTC
        # the same instants the CLI reads from the same text, written out in full
        start, end = parse_time(DAY), parse_time(NEXT)
        assert (start.utcoffset(), start.hour, end - start) == (timedelta(0), 0, timedelta(days=1))
        assert series(format_ts(start), format_ts(end)).json() == by_date.json()
        assert series(f" {DAY}", NEXT).json() == by_date.json()

        events = c.get("/api/v1/events", params={"start": DAY, "end": NEXT})
        assert events.status_code == 200, events.text
        assert [e["id"] for e in events.json()["events"]] == ["kpi:ev-1"]
        assert c.get("/api/v1/events", params={"end": DAY}).json()["events"] == []  # before 00:00Z

        # a date-time without an offset: refused, and what the hint suggests is accepted
        naive = series(f"{DAY}T08:00:00", NEXT)
        assert naive.status_code == 422
        detail = naive.json()["detail"]
        assert "start: timestamp has no UTC offset; append 'Z' for UTC" in detail
        assert series(f"{DAY}T08:00:00Z", NEXT).json()["series"][0]["values"] == [2.0, 3.0]
        assert "plain date (2026-11-23, midnight UTC)" in detail
        bad = c.get("/api/v1/events", params={"start": f"{DAY}T08:00:00"})
        assert bad.status_code == 422 and "append 'Z' for UTC" in bad.json()["detail"]
        # a malformed date is still refused, naming the parameter
        wrong = series("2026-13-45", NEXT)
        assert wrong.status_code == 422 and "start" in wrong.text
