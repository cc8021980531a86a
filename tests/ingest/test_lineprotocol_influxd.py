"""Line protocol as influxd 1.x reads it: the same body written to a real ``influxd``'s ``/write``
and to ingest's (on a real uvicorn, storing into the same ``influxd``, another database) is
answered alike and stores the same points.

influxd cuts a body into points with its ``scanLine``: a ``\\n`` inside a double-quoted string
field value is part of the value (a log message, a stack trace sent by Telegraf), a string never
closed runs to the end of the body (which is then one point, refused). Ingest ended every line
at ``\\n``: it refused such a point, or stored the text after the break as a point of its own —
under a machine name no line named. Two deliberate differences are pinned here too: ``\\r\\n``
line ends (influxd refuses them; ingest accepts them, no value changing meaning) and a comment
line holding a quote (influxd silently drops the rest of the body; ingest ends the comment at its
``\\n``).
"""

from __future__ import annotations

import itertools
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from ingest import lineproto
from ingest.testing import run_server, server_settings
from tests.support.servers import InfluxDB

T = 1_795_420_800
"""2026-11-23T08:00:00Z, in seconds (``precision=s``)."""
DIRECT = "direct"
"""The database direct writes go to (ingest writes to the server's ``zhizao``)."""

Stored = set[tuple[str, str, Any, int | None]]
"""(machine, field or signal, value, time in s — ``None`` for a point written without one)."""


@dataclass(frozen=True)
class Pair:
    influxd: InfluxDB
    ingest: str
    """ingest's base URL; it stores into ``influxd``'s database ``zhizao``."""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One influxd and one ingest for the module: each case writes under a site of its own."""
    tmp = tmp_path_factory.mktemp("lp-influxd")
    server = InfluxDB(tmp / "influxdb")
    server.start()
    try:
        server.query(f'CREATE DATABASE "{DIRECT}"')
        settings = server_settings(tmp, backend="influxdb")
        settings.storage.influxdb.url = server.url
        settings.storage.influxdb.database = server.database
        with run_server(settings) as url:
            yield Pair(server, url)
    finally:
        server.kill()


_sites = itertools.count(1)


def _site() -> str:
    return f"s{next(_sites)}"


def _query(server: InfluxDB, db: str, q: str) -> list[dict[str, Any]]:
    url = f"{server.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "s"})
    with urllib.request.urlopen(url, timeout=30) as resp:
        doc = orjson.loads(resp.read())
    series: list[dict[str, Any]] = doc["results"][0].get("series", [])
    return series


def _direct(pair: Pair, body: bytes) -> tuple[int, str, Stored]:
    """influxd's answer (status, error) to ``body`` and the points it then holds under the body's site."""
    req = urllib.request.Request(f"{pair.influxd.url}/write?db={DIRECT}&precision=s", data=body,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text = resp.status, ""
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    site = _site_of(body)
    stored: Stored = set()
    q = f"SELECT * FROM \"telemetry\" WHERE \"site\" = '{site}' GROUP BY *"
    for s in _query(pair.influxd, DIRECT, q):
        cols = s["columns"]
        for row in s["values"]:
            for name, value in zip(cols[1:], row[1:], strict=True):
                if value is not None:
                    stored.add((s["tags"]["machine"], name, value, _when(row[0])))
    return status, text, stored


def _ingest(pair: Pair, body: bytes) -> tuple[int, dict[str, Any], Stored]:
    """ingest's answer (status, problem document) to ``body`` and the samples it then holds."""
    r = httpx.post(f"{pair.ingest}/write", params={"precision": "s"}, content=body,
                   headers={"content-type": "text/plain; charset=utf-8"}, timeout=30)
    doc: dict[str, Any] = r.json() if r.content else {}
    site = _site_of(body)
    stored: Stored = set()
    for s in _query(pair.influxd, pair.influxd.database,
                    f"SELECT \"value\", \"value_str\" FROM \"telemetry\" WHERE \"site\" = '{site}' "
                    'GROUP BY "machine", "signal"'):
        for t, value, text in s["values"]:
            stored.add((s["tags"]["machine"], s["tags"]["signal"], text if value is None else value,
                        _when(t)))
    return r.status_code, doc, stored


def _when(t: int) -> int | None:
    """A stored time, ``None`` for "now" (a point written without a timestamp)."""
    return None if abs(t - T) > 60 else t


def _site_of(body: bytes) -> str:
    return body.split(b"site=", 1)[1].split(b",", 1)[0].split(b" ", 1)[0].decode()


def _lp(site: str, machine: str, fields: str, t: int | None = T) -> str:
    """One point (no line end)."""
    stamp = "" if t is None else f" {t}"
    return f"telemetry,site={site},area=a1,line=line1,machine={machine} {fields}{stamp}"


@dataclass(frozen=True)
class Case:
    body: str
    """With ``{site}`` for the case's site (in ``stored``'s string values too)."""
    status: int
    stored: Stored
    lines: tuple[int, ...] = ()
    """The lines ingest's 400 names."""


H = "telemetry,site={site},area=a1,line=line1,machine="
CASES = {
    "newline in a string value": Case(
        H + 'cnc-1 msg="spindle overload\nat block N120" 1795420800\n' + H + "cnc-2 x=2 1795420800\n",
        204, {("cnc-1", "msg", "spindle overload\nat block N120", T), ("cnc-2", "x", 2, T)}),
    "newline in a string value, the next line looking like a point": Case(
        H + 'cnc-1 trace="Traceback:\n' + H + 'cnc-9 x=9 1795420800\nend",n=1i 1795420800\n',
        204, {("cnc-1", "trace", "Traceback:\n" + H + "cnc-9 x=9 1795420800\nend", T),
              ("cnc-1", "n", 1, T)}),
    "two string values with newlines, then a point": Case(
        H + 'cnc-1 a="1\n2",b="3\n\n4" 1795420800\n' + H + "cnc-2 x=2 1795420800\n",
        204, {("cnc-1", "a", "1\n2", T), ("cnc-1", "b", "3\n\n4", T), ("cnc-2", "x", 2, T)}),
    "escaped quote then newline, the string closed later": Case(
        H + 'cnc-1 msg="say \\"hi\\"\nbye \\"x\\"" 1795420800\n' + H + "cnc-2 x=2 1795420800\n",
        204, {("cnc-1", "msg", 'say "hi"\nbye "x"', T), ("cnc-2", "x", 2, T)}),
    "escaped quote then newline, the string never closed": Case(
        H + 'cnc-1 msg="a\\"\n' + H + "cnc-2 x=2 1795420800\n",
        400, set(), (1,)),
    "escaped backslash closes the string before the newline": Case(
        H + 'cnc-1 msg="a\\\\" 1795420800\n' + H + "cnc-2 x=2 1795420800\n",
        204, {("cnc-1", "msg", "a\\", T), ("cnc-2", "x", 2, T)}),
    "unterminated quote at the end of the body": Case(
        H + "cnc-2 x=2 1795420800\n" + H + 'cnc-1 msg="abc 1795420800\n',
        400, {("cnc-2", "x", 2, T)}, (2,)),
    "unterminated quote at the end of the body, no final newline": Case(
        H + "cnc-2 x=2 1795420800\n" + H + 'cnc-1 msg="abc 1795420800',
        400, {("cnc-2", "x", 2, T)}, (2,)),
    "unterminated quote swallows the lines after it": Case(
        H + 'cnc-1 msg="abc 1795420800\n' + H + "cnc-2 x=2 1795420800\n" + H + 'cnc-3 s="c" 1795420800\n',
        400, set(), (1,)),
    "a quote inside a number swallows the lines after it": Case(
        H + 'cnc-1 x=1"2 1795420800\n' + H + "cnc-2 x=2 1795420800\n",
        400, set(), (1,)),
    "quotes in tags are characters": Case(
        H + 'cnc-1,descr=12"_pipe x=1 1795420800\n' + H + 'cnc-2,descr=" y="a\nb" 1795420800\n',
        204, {("cnc-1", "x", 1, T), ("cnc-2", "y", "a\nb", T)}),
    "a line break after a separator of other kinds stays in the string": Case(
        H + 'cnc-1 msg="a\u2028b\x85c\r\nd" 1795420800\n',
        204, {("cnc-1", "msg", "a\u2028b\x85c\r\nd", T)}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ingest_answers_and_stores_as_influxd_does(pair: Pair, name: str) -> None:
    case = CASES[name]
    site = _site()
    body = case.body.format(site=site).encode()
    expected = {(m, f, v.format(site=site) if isinstance(v, str) else v, t) for m, f, v, t in case.stored}
    status, error, direct = _direct(pair, body)
    assert (status, direct) == (case.status, expected), (status, error, direct)  # influxd itself
    got_status, doc, stored = _ingest(pair, body)
    assert (got_status, stored) == (status, direct), (doc, stored)
    if case.lines:
        assert [e["line"] for e in doc["errors"]] == list(case.lines), doc
        assert doc["detail"].startswith(f"partial write: {len(direct)} values stored"), doc


def test_an_unclosed_string_names_the_lines_it_swallowed(pair: Pair) -> None:
    """The error says why the following lines were not stored: one point from the open quote on."""
    body = CASES["unterminated quote swallows the lines after it"].body.format(site=_site()).encode()
    status, doc, stored = _ingest(pair, body)
    assert status == 400 and stored == set(), doc
    assert "line 1: unterminated string field value" in doc["detail"], doc
    assert "lines 1-3 (to the end of the body) are read as one point" in doc["detail"], doc


def _windows(site: str, end: str) -> str:
    """A body with every kind of value, its lines ended by ``end``; a string value holds ``\\r\\n``."""
    return end.join([
        "# written by a Windows-side client", "",
        _lp(site, "cnc-1", "power_kw=12.5,parts=1042i,running=true", T),
        _lp(site, "cnc-2", 'program="P-17 \\"rev b\\"",msg="line one\r\nline two"', T + 1),
        _lp(site, "cnc-3", "temp=20.5", None),
        _lp(site, "cnc-4", 'state="RUN"', None),
    ]) + end


def test_crlf_line_ends_are_accepted_and_change_no_value(pair: Pair) -> None:
    """``\\r\\n`` ends a line as ``\\n`` does: ingest stores exactly what it stores for the same body
    with ``\\n`` line ends — what influxd stores for that one. influxd itself refuses the CRLF body's
    points whose last token is a number, boolean or timestamp, and stores a string value that ends a
    line without timestamp mangled (``state="RUN"\\r`` as ``RUN"``); a ``\\r\\n`` inside a string
    value is kept by both."""
    lf, crlf = _windows(_site(), "\n"), _windows(_site(), "\r\n")
    lf_status, lf_doc, lf_stored = _ingest(pair, lf.encode())
    assert lf_status == 204, lf_doc
    status, doc, stored = _ingest(pair, crlf.encode())
    assert status == 204, doc
    assert stored == lf_stored
    assert ("cnc-2", "msg", "line one\r\nline two", T + 1) in stored
    assert ("cnc-4", "state", "RUN", None) in stored and len(stored) == 7
    direct_status, _, direct = _direct(pair, lf.encode())
    assert (direct_status, direct) == (204, lf_stored)
    direct_status, error, direct = _direct(pair, crlf.encode())
    assert direct_status == 400 and "bad timestamp" in error and "invalid number" in error, error
    assert direct == {("cnc-4", "state", 'RUN"', None)}  # influxd's reading: refused or mangled


def test_a_comment_line_ends_at_its_newline_whatever_quotes_it_holds(pair: Pair) -> None:
    """influxd reads ``# a=1 "x`` as opening a string: it drops the rest of the body silently (204,
    nothing stored). A comment holds no field value, so its quotes mean nothing: ingest stores the
    points after it."""
    site = _site()
    body = "\n".join(["# bore=12\" pipe", _lp(site, "cnc-1", "x=1"), _lp(site, "cnc-2", "x=2")])
    status, _, direct = _direct(pair, body.encode())
    assert (status, direct) == (204, set())  # influxd loses both points and says nothing
    got_status, doc, stored = _ingest(pair, body.encode())
    assert got_status == 204, doc
    assert stored == {("cnc-1", "x", 1, T), ("cnc-2", "x", 2, T)}


def test_points_are_cut_where_influxd_cuts_them() -> None:
    """:func:`lineproto.points`: line numbers of each point, escapes, comments, the final newline."""
    cut = [(p.first, p.last, p.unterminated) for p in lineproto.points(
        'm,t=1 a="x\ny",b=2 1\n# "c=1 "\nm,t=1 a=1 1\\\nm,t=2 a=2 2\nm a="open\n\n')]
    assert cut == [(1, 2, False), (3, 3, False), (4, 5, False), (6, 6, True)]
    # a backslash before the body's final newline escapes nothing (influxd needs two bytes after it)
    assert [p.text for p in lineproto.points("m a=1 1\\\n")] == ["m a=1 1\\", ""]
    # a quote counts only in a field value: not in the measurement, a tag or a field key
    assert [p.last for p in lineproto.points('m"x,t="1 "k=1,j="a\n" 1\nm b=1')] == [2, 3]
    parsed = lineproto.parse('telemetry,site=p,area=a,line=l,machine=m s="a\nb" x\nnext\n', precision="s")
    assert parsed.errors[0][0] == 1 and "(the point spans lines 1-2)" in parsed.errors[0][1], parsed.errors
    assert parsed.errors[1:] == [(3, "expected 'measurement,tags fields [timestamp]'")]


def test_a_body_of_many_points_with_strings_is_cut_in_linear_time() -> None:
    """Each line is scanned once (and only when it holds a quote or a backslash): a 20,000-point
    body with a string value in every point parses in a few seconds at most, even on a loaded box."""
    import time

    body = "\n".join(_lp("p", f"m{i % 50}", f'state="RUN {i}",x={i}') for i in range(20_000))
    started = time.perf_counter()
    parsed = lineproto.parse(body, precision="s")
    assert time.perf_counter() - started < 5
    assert len(parsed.frame) == 40_000 and not parsed.errors
