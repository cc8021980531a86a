"""InfluxDB line protocol: the parser's convention, and Telegraf-style writes becoming samples."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest import lineproto
from ingest.auth import Scope
from ingest.testing import create_token, run_server, server_settings
from tests.ingest.helpers import assert_problem, stored_count
from tests.support.servers import InfluxDB

LP = "text/plain; charset=utf-8"
NS = 1_795_420_800_000_000_000  # 2026-11-23T08:00:00Z in ns

# what Telegraf's outputs.influxdb_v2 sends (gzip, Token auth, ns precision, extra host tag)
TELEGRAF = (
    "machine_power,area=a1,host=edge-7,line=line1,machine=cnc-1,site=plant,unit=kW "
    "power_kw=12.5,energy_kwh=1042i,running=true,program=\"P-17 \\\"rev b\\\"\" 1795420800000000000\n"
    "machine_power,area=a1,host=edge-7,line=line1,machine=cnc-1,site=plant,unit=kW "
    "power_kw=13.25,energy_kwh=1043i,running=false,program=\"P-17\" 1795420801000000000\n"
    "telemetry,site=plant,area=a1,line=line1,machine=cnc-2,quality=uncertain "
    "spindle_speed=900 1795420800000000000\n"
)


def test_parser_convention_and_escapes() -> None:
    parsed = lineproto.parse(
        'my_meas,site=p,area=a,line=l,machine=m,other=x\\,y f1=1,s="a,b c" 1700000000\n'
        "# comment\n\n"
        "telemetry,site=p,area=a,line=l,machine=m v=2u\n"
        "bad line\n"
        "telemetry,site=p,area=a,line=l f=1 1\n"
        "telemetry,site=p,area=a,line=l,machine=m f=NaN 1\n", precision="s", now_ns=5_000_000_000)
    f = parsed.frame
    assert f.signal == ["my_meas.f1", "my_meas.s", "v"]
    assert f.value_str[1] == "a,b c" and f.vtype == ["f", "s", "i"]
    assert f.ts_us == [1_700_000_000_000_000, 1_700_000_000_000_000, 5_000_000]
    assert [n for n, _ in parsed.errors] == [5, 6, 7]
    assert "missing tag(s) machine" in parsed.errors[1][1]
    assert parsed.ignored_tags == 1
    with pytest.raises(ValueError, match="precision"):
        lineproto.parse("", precision="weeks")


def test_telegraf_style_write_becomes_queryable_samples(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, auth=True)
    token = create_token(settings, "telegraf-edge-7", Scope.WRITE, Scope.READ)
    with run_server(settings) as url, httpx.Client(base_url=url) as c:
        r = c.post("/api/v2/write", params={"org": "plant", "bucket": "zhizao", "precision": "ns"},
                   content=gzip.compress(TELEGRAF.encode()),
                   headers={"Authorization": f"Token {token}", "Content-Encoding": "gzip",
                            "Content-Type": "text/plain; charset=utf-8"})
        assert r.status_code == 204, r.text
        auth = {"Authorization": f"Bearer {token}"}
        series = c.get("/api/v1/series", headers=auth, params={
            "asset": "plant/a1/line1", "start": "2026-11-23T00:00:00Z", "end": "2026-11-24T00:00:00Z"}).json()
        got = {(s["asset"], s["signal"]): (s["values"], s["unit"], s["ts"]) for s in series["series"]}
        assert got[("plant/a1/line1/cnc-1", "machine_power.power_kw")][:2] == ([12.5, 13.25], "kW")
        assert got[("plant/a1/line1/cnc-1", "machine_power.energy_kwh")][0] == [1042, 1043]
        assert got[("plant/a1/line1/cnc-1", "machine_power.running")][0] == [True, False]
        assert got[("plant/a1/line1/cnc-1", "machine_power.program")][0] == ['P-17 "rev b"', "P-17"]
        assert got[("plant/a1/line1/cnc-2", "spindle_speed")][2] == ["2026-11-23T08:00:00.000000Z"]
        q = [s["quality"] for s in series["series"] if s["signal"] == "spindle_speed"]
        assert q == [["uncertain"]]
        # v1 endpoint with the token as ?p= and second precision
        r = c.post("/write", params={"db": "zhizao", "precision": "s", "u": "x", "p": token},
                   content=b"telemetry,site=plant,area=a1,line=line1,machine=cnc-3 temp=20.5 1795420800")
        assert r.status_code == 204, r.text
        latest = c.get("/api/v1/latest", headers=auth, params={"asset": "plant/a1/line1/cnc-3"}).json()
        assert latest["values"][0]["value"] == 20.5
        # v1 clients with basic auth (Telegraf outputs.influxdb: username + password = token)
        r = c.post("/write", params={"db": "zhizao", "precision": "s"}, auth=("telegraf", token),
                   content=b"telemetry,site=plant,area=a1,line=line1,machine=cnc-3 temp=21.5 1795420801")
        assert r.status_code == 204, r.text
        assert_problem(c.post("/write", auth=("telegraf", "wrong"), content=b"x"), 401)
        # a partial write stores the good lines and names the bad ones
        r = c.post("/api/v2/write", headers={"Authorization": f"Token {token}"},
                   content=b"telemetry,site=plant,area=a1,line=line1,machine=cnc-4 x=1 1\nnonsense\n")
        assert_problem(r, 400, "partial write", "line 2")
        # no token -> 401
        assert_problem(c.post("/api/v2/write", content=TELEGRAF.encode()), 401)


def _line(machine: str, fields: str, ns: int = NS) -> str:
    return f"telemetry,site=plant,area=a1,line=line1,machine={machine} {fields} {ns}"


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[httpx.Client]:
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def _influx_write(server: InfluxDB, body: bytes) -> int:
    """Status of a direct ``/write`` to influxd (what InfluxDB itself thinks of ``body``)."""
    req = urllib.request.Request(f"{server.url}/write?db={server.database}&precision=ns", data=body,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_only_newline_ends_a_line_unicode_separators_stay_in_a_string_field(
        duck: httpx.Client, influxdb: InfluxDB) -> None:
    """A line ends at \\n only (\\r\\n too): not at the other breaks ``str.splitlines`` knows (\\r,
    \\x0b, \\x0c, \\x1c-\\x1e, \\x85, U+2028, U+2029). A string value holding one is stored whole,
    and the text after it is not parsed as a line of its own (a sample of a machine no line names)."""
    text = "spindle\u2028telemetry,site=plant,area=a1,line=line1,machine=cnc-9 temp=999 1\u2028x"
    body = _line("cnc-1", f'msg="{text}"')
    assert _influx_write(influxdb, body.encode()) == 204  # valid line protocol for InfluxDB itself
    r = duck.post("/write", content=body.encode(), headers={"content-type": LP})
    got = duck.get("/api/v1/latest", params={"asset": "plant/a1/line1/cnc-9"}).json()
    assert r.status_code == 204, (r.text, got)
    assert duck.get("/api/v1/latest", params={"asset": "plant/a1/line1/cnc-1"}).json()["values"][0]["value"] \
        == text
    assert stored_count(duck) == 1
    parsed = lineproto.parse(f"{_line('cnc-1', 'x=1')}\r\n{_line('cnc-2', 'x=2')}\r\nnonsense\r\n")
    assert parsed.frame.asset == ["plant/a1/line1/cnc-1", "plant/a1/line1/cnc-2"]
    assert [n for n, _ in parsed.errors] == [3]


def test_double_quote_in_a_tag_is_literal(duck: httpx.Client, influxdb: InfluxDB) -> None:
    """Quotes have a meaning only in string field values: a ``"`` in the measurement or a tag
    (Telegraf copies device descriptions into tags) is a character like any other, as influxd
    stores it — not the start of an unterminated string."""
    body = _line("cnc-1", "x=1").replace("machine=cnc-1", 'machine=cnc-1,descr=12"_pipe')
    assert _influx_write(influxdb, body.encode()) == 204
    r = duck.post("/write", content=body.encode(), headers={"content-type": LP})
    assert r.status_code == 204, r.text
    assert stored_count(duck) == 1
    parsed = lineproto.parse('m,site=p,area=a,line=l,machine=m,descr="12in,o"k=" f="a b",g=2 1\n'
                             'telemetry,site=p,area=a,line=l,machine=m f="a b 1\n')
    assert parsed.frame.signal == ["m.f", "m.g"] and parsed.frame.value_str[0] == "a b"
    assert parsed.ignored_tags == 2 and parsed.errors == [(2, "unterminated string field value")]
