"""Review 57 (availability, pre-existing, made ~20 % worse by the influxd-compatible cutting):
ingest parses a line-protocol body on the event loop, all of it, before checking
``max_samples_per_batch`` (413). One 10 MB body of 300,000 field values (within
``max_body_bytes`` 16 MB) blocks every other request — agents' batches, /healthz — for seconds.
Real uvicorn + DuckDB.

Now the parse stops past ``max_samples_per_batch`` values, and a body above 64 KiB is parsed in a
worker thread. /healthz waited 3.3-3.9 s behind these bodies with the old code, 0.03-0.1 s with
the new one, on a 2-core machine: the 1 s bound is far from both."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from ingest import lineproto
from ingest.app import create_app
from ingest.testing import run_server, server_settings


def _lp(i: int) -> str:
    return (f'telemetry,site=p,area=a,line=l,machine=m{i % 50} state="RUN {i}",msg="a\\"b, c=d",x={i} '
            "1795420800")


def test_a_large_line_protocol_body_does_not_stall_other_requests(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    app = create_app(settings)
    body = "\n".join(_lp(i) for i in range(100_000)).encode()
    with run_server(settings, app=app) as url:
        answer, worst = _worst_healthz_wait(url, body)
    assert answer == [413], answer  # 300,000 values > max_samples_per_batch: refused anyway
    assert worst < 1.0, f"/healthz waited {worst:.1f} s behind one line-protocol body's parse"


def _worst_healthz_wait(url: str, body: bytes) -> tuple[list[int], float]:
    """The answer to ``body`` written to ``/write``, and /healthz's longest wait meanwhile."""
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        answer: list[int] = []
        big = threading.Thread(target=lambda: answer.append(
            httpx.post(f"{url}/write", params={"precision": "s"}, content=body, timeout=120).status_code))
        big.start()
        time.sleep(0.5)
        worst = 0.0
        while big.is_alive():
            t = time.perf_counter()
            c.get("/healthz")
            worst = max(worst, time.perf_counter() - t)
        big.join()
    return answer, worst


def test_a_large_body_within_the_limit_is_parsed_off_the_event_loop(tmp_path: Path) -> None:
    """The parse stopping at the limit is not enough: a body of 100,000 lines, each refused (``x=1.5.5``,
    so no value counts toward the limit), is parsed whole — in a worker thread, not on the loop."""
    settings = server_settings(tmp_path)
    app = create_app(settings)
    body = "\n".join(_lp(i).replace(f"x={i} ", f"x={i}.5.5 ") for i in range(100_000)).encode()
    with run_server(settings, app=app) as url:
        answer, worst = _worst_healthz_wait(url, body)
    assert answer == [400], answer  # partial write: every line refused
    assert worst < 1.0, f"/healthz waited {worst:.1f} s behind one line-protocol body's parse"


def test_the_parse_stops_past_the_value_limit() -> None:
    """Past ``max_values`` the rest of the body is not read: its bad line later is never reported."""
    body = "\n".join([_lp(i) for i in range(20)] + ["nonsense"])
    full = lineproto.parse(body, "s")
    assert (len(full.frame), len(full.errors), full.over_limit) == (60, 1, False)
    assert not lineproto.parse(body, "s", max_values=60).over_limit
    cut = lineproto.parse(body, "s", max_values=10)
    # the 4th point (3 values, 1 left under the limit) is refused while its fields are split: none read
    assert (len(cut.frame), cut.errors, cut.over_limit) == (9, [], True)
