"""``zhizao dashboards check --influx-url``'s time window: a store filled by a short simulator run
stamped in the past (a scenario's own time, never wall time) is checked over the window holding
its data, and the command says which window it used and where the data lies."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from dashboards.cli import main
from ingest.testing import run_server, server_settings
from simulator.engine import generate
from tests.dashboards.fill import post_samples, scenario
from tests.support.servers import InfluxDB

MINUTES = 10


def _panels(out: str) -> tuple[int, int]:
    """(panel queries with rows, panel queries without) in the check's output."""
    lines = [line for line in out.splitlines() if " panel " in line]
    ok = sum(1 for line in lines if line.endswith(" rows ok"))
    return ok, len(lines) - ok


def test_check_defaults_to_the_window_of_the_data(
        tmp_path: Path, influxdb: InfluxDB, capsys: pytest.CaptureFixture[str]) -> None:
    # a 10-minute simulator run whose simulated time ended two days ago
    data_end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    sc = scenario(data_end, minutes=MINUTES)
    settings = server_settings(tmp_path, backend="influxdb")
    settings.storage.influxdb.url = influxdb.url
    samples = list(generate(sc, 7, MINUTES * 60))
    with run_server(settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        post_samples(client, samples, "sim")
    first, last = min(s.ts for s in samples), max(s.ts for s in samples)
    span = (f'samples in "telemetry" of database \'zhizao\': '
            f"{first:%Y-%m-%dT%H:%M:%SZ} .. {last:%Y-%m-%dT%H:%M:%SZ}")
    base = ["check", "--influx-url", influxdb.url, "--var", "line=line1", "--var", "machine=imm-1"]

    # default: 8 h ending at the newest sample — the telemetry panels have rows
    main(base)
    out = capsys.readouterr()
    end = last + timedelta(seconds=1)
    assert (f"window {end - timedelta(hours=8):%Y-%m-%dT%H:%M:%SZ} .. {end:%Y-%m-%dT%H:%M:%SZ} "
            f"(8 h ending at the newest sample); {span}") in out.out.splitlines()[1]
    ok, empty = _panels(out.out)
    assert ok >= 7, out.out  # the raw telemetry panels; the others chart what this fill does not
    # write (KPI feed, anomaly scores, fleet reports)
    for panel in ("plant-overview panel 4 'Machine state'", "machine-detail panel 3 'Process signals'",
                  "energy panel 1 'Power by machine'"):
        assert re.search(f"^zhizao-{re.escape(panel)} A: [1-9][0-9]* rows ok$", out.out, re.M), panel
    assert "holds no samples" not in out.err

    # ending now, the window misses the data: every panel is empty, and the command says why
    assert main([*base, "--end", "now", "--hours", "1"]) == 1
    out = capsys.readouterr()
    window = r"^window \S+ \.\. \S+ \(1 h ending now\); "
    assert re.search(window + re.escape(span) + "$", out.out, re.M), out.out
    ok, empty = _panels(out.out)
    assert ok == 0 and empty > 30
    assert (f"holds no samples ({span}): run with --end latest (the default) or an --end inside "
            "the data") in out.err

    # an explicit end inside the data
    main([*base, "--end", f"{last:%Y-%m-%dT%H:%M:%SZ}", "--hours", "0.1"])
    out = capsys.readouterr()
    assert "(0.1 h ending at --end)" in out.out
    assert _panels(out.out)[0] >= 7


def test_check_on_an_empty_database_says_so(
        influxdb: InfluxDB, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--influx-url", influxdb.url]) == 1
    out = capsys.readouterr()
    assert "(8 h ending now); no samples in \"telemetry\" of database 'zhizao'" in out.out
    assert "every panel is empty until data arrives" in out.err


@pytest.mark.parametrize("argv", [["--end", "yesterday"], ["--end", "2026-11-23T08:00:00"],
                                  ["--hours", "0"], ["--hours", "x"]])
def test_check_refuses_a_bad_window(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--influx-url", "http://127.0.0.1:9", *argv])
    assert exc.value.code == 2
    assert "argument --" in capsys.readouterr().err
