"""Line protocol, review 82 (helper-82, real clients against the InfluxDB-compatible write routes):

* the end of the measurement and tags (``_head_end``) was found in time quadratic in the escaped
  spaces before it — it copied the line up to each one (one line of ``m`` + 400 KB of ``\\ ``
  took 1.9 s, a 1.6 KB gzip body 33 s of server CPU); now linear, same results;
* one very wide line was split and parsed to its end before ``limits.max_samples_per_batch`` was
  checked (a 9.9 MB line of 1,000,000 fields: 4.9 s, ~316 MiB, then 413); now its fields are
  counted while they are split and the parse stops there;
* a tag key given twice was accepted, the last value winning (influxd refuses the point:
  "duplicate tags"); now the point is refused, naming the key.

Real uvicorn, DuckDB and influxd where a route or a comparison is involved.
"""

from __future__ import annotations

import gzip
import random
import time
import tracemalloc
from pathlib import Path

import httpx
import pytest

from ingest import lineproto
from ingest.testing import run_server, server_settings
from tests.ingest.helpers import assert_problem, stored_count
from tests.support.servers import InfluxDB

LP = {"content-type": "text/plain; charset=utf-8"}


def _old_head_end(line: str) -> int:
    """The implementation before the fix (quadratic), the reference for its results."""
    i = line.find(" ")
    while i > 0 and line[i - 1] == "\\" and (i - len(line[:i].rstrip("\\"))) % 2:
        i = line.find(" ", i + 1)
    return i


# ---- 1: linear head scan ---------------------------------------------------------------------


def _cpu(fn: object, arg: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        fn(arg)  # type: ignore[operator]
        best = min(best, time.process_time() - t)
    return best


def test_head_end_scales_linearly_in_escaped_spaces() -> None:
    """8x the escaped spaces costs < 20x the time (linear: ~8, the old copy per space: ~64);
    process CPU time, the least of 3 runs, no absolute bound."""
    small = "m" + "\\ " * 20_000 + ",site=s,area=a,line=l,machine=m x=1 1"
    large = "m" + "\\ " * 160_000 + ",site=s,area=a,line=l,machine=m x=1 1"
    assert lineproto._head_end(large) == large.index(" x=1")
    t_small = max(_cpu(lineproto._head_end, small), 1e-4)
    t_large = _cpu(lineproto._head_end, large)
    assert t_large < 20 * t_small, (t_small, t_large)


def test_a_line_of_escaped_spaces_parses_in_linear_time() -> None:
    """The whole parse of such a line (what t13_quadratic.py timed, here in an ignored tag):
    8x the input < 20x the time."""
    def line(n: int) -> str:
        return "telemetry,site=s,area=a,line=l,machine=m,host=h" + "\\ " * n + " x=1 1\n"

    small, large = line(25_000), line(200_000)
    parsed = lineproto.parse(large, precision="s")
    assert not parsed.errors and parsed.frame.asset == ["s/a/l/m"] and parsed.ignored_tags == 1
    t_small = max(_cpu(lineproto.parse, small), 1e-4)
    t_large = _cpu(lineproto.parse, large)
    assert t_large < 20 * t_small, (t_small, t_large)


@pytest.mark.parametrize("line", [
    "m x=1", "m\\ x=1", "m\\\\ x=1", "m\\\\\\ x=1", "m\\\\\\\\ x=1", "\\ m x=1", "\\\\ m x=1",
    "m,t=a\\ b x=1", "m,t=a\\\\ b x=1", "m,t=a\\\\\\ b\\ c x=1 5", "nospace", "\\ ", " lead", "\\",
    "m\\", "a\\ \\ \\ b c", "a\\\\\\\\\\ b c", 'm,descr=12"_pipe x=1',
])
def test_head_end_matches_the_old_results_on_escapes(line: str) -> None:
    """Odd and even runs of backslashes before a space (odd: the space is escaped)."""
    assert lineproto._head_end(line) == _old_head_end(line)


def test_head_end_matches_the_old_results_on_random_lines() -> None:
    rng = random.Random(82)
    for _ in range(5000):
        line = "".join(rng.choice("ab\\\\\\ ,=") for _ in range(rng.randint(0, 24)))
        assert lineproto._head_end(line) == _old_head_end(line), repr(line)


def test_escaped_spaces_are_read_as_before() -> None:
    """An escaped space stays in the tag; after an escaped backslash (an even run) a space ends it."""
    parsed = lineproto.parse("telemetry,site=s,area=a,line=l,machine=m,host=a\\ b\\\\ x=1 7\n", precision="s")
    assert not parsed.errors, parsed.errors
    assert (parsed.frame.signal, parsed.frame.value, parsed.frame.ts_us) == (["x"], [1.0], [7_000_000])
    assert parsed.ignored_tags == 1
    bad = lineproto.parse("telemetry,site=s,area=a,line=l,machine=m,host=a\\\\\\ x=1 7\n", precision="s")
    assert bad.errors  # an odd run: the space is escaped, the line has no field section of its own


# ---- 3: one very wide line -------------------------------------------------------------------


def _wide(n: int) -> str:
    return "telemetry,site=s,area=a,line=l,machine=m " + ",".join(f"f{i}=1" for i in range(n)) + " 1\n"


def test_one_wide_line_is_refused_while_its_fields_are_split() -> None:
    """1,000,000 fields (9.9 MB), limit 1,000: the parse stops within the line — no value built
    and little memory allocated (old: every field split and parsed, ~316 MiB, seconds)."""
    body = _wide(1_000_000)
    tracemalloc.start()
    try:
        t = time.process_time()
        parsed = lineproto.parse(body, precision="s", max_values=1000)
        took = time.process_time() - t
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.over_limit
    assert len(parsed.frame) <= 1000 and not parsed.errors
    # the body's lines are split (one copy of it, ~10 MB), no list of a million fields (old: ~100 MB)
    assert peak < 3 * len(body), peak
    assert took < 2.0, took


@pytest.mark.parametrize(("fields", "limit", "over"),
                         [(5, 5, False), (6, 5, True), (1, 1, False), (2, 1, True)])
def test_the_limit_within_a_line_is_exact(fields: int, limit: int, over: bool) -> None:
    parsed = lineproto.parse(_wide(fields), precision="s", max_values=limit)
    assert parsed.over_limit is over
    assert len(parsed.frame) == (0 if over else fields)


def test_the_limit_counts_the_lines_before() -> None:
    """3 values stored by the first line, limit 5: a second line of 3 fields passes it."""
    body = _wide(3) + _wide(2) + _wide(3)
    parsed = lineproto.parse(body, precision="s", max_values=5)
    assert parsed.over_limit and len(parsed.frame) == 5
    assert not lineproto.parse(_wide(3) + _wide(2), precision="s", max_values=5).over_limit


def test_a_commas_in_strings_do_not_count() -> None:
    """Commas inside a string value are not field separators: 2 fields, limit 2."""
    body = 'telemetry,site=s,area=a,line=l,machine=m s="a,b,c,d",x=1 1\n'
    parsed = lineproto.parse(body, precision="s", max_values=2)
    assert not parsed.over_limit and parsed.frame.value_str[0] == "a,b,c,d"


def test_a_wide_gzip_body_is_answered_413_quickly(tmp_path: Path) -> None:
    """Over real uvicorn: 413 naming the limit, nothing stored."""
    settings = server_settings(tmp_path)
    settings.limits.max_samples_per_batch = 1000
    body = gzip.compress(_wide(1_000_000).encode())
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/api/v2/write", params={"precision": "s"}, content=body,
                   headers={**LP, "content-encoding": "gzip"})
        assert_problem(r, 413, "more than 1000 field values")
        assert r.json()["limit"] == 1000
        assert stored_count(c, "s") == 0


# ---- 4: duplicate tag keys -------------------------------------------------------------------

DUP = "telemetry,site=d,area=a,line=l,machine=m1,machine=m2 x=1 1795420800\n"


def test_a_duplicate_tag_key_refuses_the_line() -> None:
    other = "telemetry,site=d,area=a,line=l,machine=m3 x=2 1795420800\n"
    parsed = lineproto.parse(DUP + other, precision="s")
    assert parsed.errors == [(1, "duplicate tag key 'machine': a tag may appear once per point")]
    assert parsed.frame.asset == ["d/a/l/m3"]
    # an escaped key is the same key once unescaped; other tags twice too
    assert "duplicate tag key 'h o'" in lineproto.parse(
        "telemetry,site=d,area=a,line=l,machine=m,h\\ o=1,h\\ o=2 x=1", precision="s").errors[0][1]
    assert "duplicate tag key 'unit'" in lineproto.parse(
        "telemetry,site=d,area=a,line=l,machine=m,unit=kW,unit=W x=1", precision="s").errors[0][1]


def test_a_duplicate_tag_key_is_refused_as_influxd_refuses_it(tmp_path: Path, influxdb: InfluxDB) -> None:
    """influxd answers 400 "duplicate tags"; ingest (DuckDB) now answers 400 naming the key, the
    other lines stored (old: 204, stored under machine=m2)."""
    direct = httpx.post(f"{influxdb.url}/write", params={"db": influxdb.database, "precision": "s"},
                        content=DUP, timeout=30)
    assert direct.status_code == 400 and "duplicate tags" in direct.text, direct.text
    with run_server(server_settings(tmp_path)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/v2/write", params={"precision": "s"}, headers=LP,
                   content=DUP + "telemetry,site=d,area=a,line=l,machine=m3 x=2 1795420800\n")
        assert_problem(r, 400, "partial write: 1 values stored", "line 1: duplicate tag key 'machine'")
        assert r.json()["errors"] == [
            {"line": 1, "message": "duplicate tag key 'machine': a tag may appear once per point"}]
        assert stored_count(c, "d/a/l/m2") == 0 and stored_count(c, "d/a/l/m3") == 1
