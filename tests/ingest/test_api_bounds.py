"""Request bounds at the API (security review M3, L4, L5), against a real ingest server:

* ``POST /api/v1/events`` reads at most ``limits.max_body_bytes`` (413), as the write routes do —
  it used to read any body whole (a 200 MB event was stored, 1.26 GB RSS); message, rule and
  details are bounded and a tag-bound field refuses control characters, 422 naming the field;
* line protocol: a timestamp beyond InfluxDB's range, or a number Python's ``int``/``float`` read
  but InfluxDB does not (``1_7``, non-ASCII digits), is a 400 naming the line and the field (a
  timestamp overflow used to be a 500);
* query parameters that reach a store's query language (``signal``, ``asset``, ``prefix``) are
  checked first, 422 naming the parameter (a newline in ``signal`` used to reach InfluxQL: 503).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, stored_count
from tests.support.servers import InfluxDB

EVENT = {"id": "ev-1", "source": "kpi", "rule": "oee_low", "asset": "plant/a1/line1/cnc-1",
         "start": "2026-11-23T08:00:00Z"}
LIMIT = 64 * 1024
SERIES = {"asset": "plant", "start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}


@pytest.fixture(params=["duckdb", "influxdb"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    settings = server_settings(tmp_path, backend=request.param)
    settings.limits.max_body_bytes = LIMIT
    if request.param == "influxdb":
        server: InfluxDB = request.getfixturevalue("influxdb")
        settings.storage.influxdb.url = server.url
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_event_bodies_are_bounded(client: httpx.Client) -> None:
    big = json.dumps({**EVENT, "details": {"blob": "x" * (2 * LIMIT)}}).encode()
    assert_problem(client.post("/api/v1/events", content=big, headers={"content-type": "application/json"}),
                   413, f"limit of {LIMIT} bytes")

    def stream() -> Iterator[bytes]:  # no Content-Length: refused while reading, not after
        yield b'{"id": "ev-1", "message": "'
        for _ in range(100):
            yield b"y" * 4096
        yield b'"}'

    r = client.post("/api/v1/events", content=stream(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "exceeds the limit")
    bomb = gzip.compress(json.dumps({**EVENT, "message": "z" * (4 * LIMIT)}).encode())
    assert len(bomb) < LIMIT
    assert_problem(client.post("/api/v1/events", content=bomb,
                               headers={"content-type": "application/json", "content-encoding": "gzip"}),
                   413, "inflates to more than")
    # a gzip body within the limits is read
    ok = client.post("/api/v1/events", content=gzip.compress(json.dumps(EVENT).encode()),
                     headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert ok.json() == {"upserted": 1}, ok.text
    assert_problem(client.post("/api/v1/events", content=b"{", headers={"content-type": "application/json"}),
                   422, "body")
    assert_problem(client.post("/api/v1/events", content=json.dumps(EVENT),
                               headers={"content-type": "text/plain"}), 415, "application/json")


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"message": "m" * 4097}, "body.event.message", "at most 4096 characters"),
    ({"rule": "r" * 257}, "body.event.rule", "at most 256 characters"),
    ({"rule": "oee\nlow"}, "body.event.rule", "control characters"),
    ({"rule": "oee\\low"}, "body.event.rule", "backslashes"),
    ({"details": {"k": "v" * 17_000}}, "body.event.details", "the limit is 16384"),
])
def test_event_fields_are_bounded(client: httpx.Client, change: dict[str, object], field: str,
                                  fragment: str) -> None:
    r = client.post("/api/v1/events", json={**EVENT, **change})
    assert_problem(r, 422, field, fragment)
    assert [e["field"] for e in r.json()["errors"]] == [field]
    r = client.post("/api/v1/events", json=[EVENT, {**EVENT, "id": "ev-2", **change}])
    assert [e["field"] for e in r.json()["errors"]] == [field.replace("body.event", "body.list.1")]
    assert client.get("/api/v1/events").json()["events"] == []


LINE = "telemetry,site=plant,area=a1,line=line1,machine=cnc-1"


@pytest.mark.parametrize(("body", "fragments"), [
    (f"{LINE} x=1 1795514401\n{LINE} x=2 99999999999999999999",
     ["line 2: timestamp 99999999999999999999 (precision s) is outside InfluxDB's range"]),
    (f"{LINE} x=1 1795514401\n{LINE} x=1_7i 1795514402", ["line 2: field 'x': '1_7i' is not an integer"]),
    (f"{LINE} x=1 1795514401\n{LINE} x=\u0661\u0667 1795514402", ["line 2: field 'x':", "is not a number"]),
    (f"{LINE} x=1 1795514401\n{LINE} x=1_7 1795514402", ["line 2: field 'x': '1_7' is not a number"]),
    (f"{LINE} x=1 1795514401\n{LINE} x=1 1_0", ["line 2: timestamp '1_0' is not an integer"]),
])
def test_line_protocol_numbers(client: httpx.Client, body: str, fragments: list[str]) -> None:
    r = client.post("/write", params={"precision": "s"}, content=body.encode())
    assert_problem(r, 400, "partial write: 1 values stored, 1 lines rejected", *fragments)
    assert r.json()["errors"][0]["line"] == 2
    assert stored_count(client) == 1


@pytest.mark.parametrize(("path", "params", "fragment"), [
    ("/api/v1/series", {**SERIES, "signal": "power_kw\n"}, "signal: 'power_kw\\n' is not a valid signal"),
    ("/api/v1/series", {**SERIES, "signal": "x' OR 1=1"}, "signal: "),
    ("/api/v1/series", {**SERIES, "asset": "plant\n"}, "asset: "),
    ("/api/v1/latest", {"asset": "plant/a1/line1/cnc-1\n"}, "asset: "),
    ("/api/v1/catalogue", {"prefix": "plant\n"}, "prefix: "),
    ("/api/v1/events", {"asset": "plant\n"}, "asset: "),
])
def test_query_parameters_are_checked(client: httpx.Client, path: str, params: dict[str, str],
                                      fragment: str) -> None:
    assert_problem(client.get(path, params=params), 422, fragment)
