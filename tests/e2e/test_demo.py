"""``zhizao demo`` as a user runs it: the real command, the web dashboard in headless Chromium
showing live data and KPIs (screenshot in artifacts/), then Ctrl-C (SIGINT) stopping everything
cleanly with every sample read delivered to ingest."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import ARTIFACTS, spawn
from tests.support.ports import free_port

LINE = "plant1/a1/line1"
TILES = """
const t = document.querySelector('.overview .tiles');
if (!t) return null;
const f = root => Object.fromEntries([...root.querySelectorAll('[data-field]')].map(
  e => [e.dataset.field, e.dataset.value]));
return {tiles: f(t),
        rows: [...document.querySelectorAll('tr[data-machine]')].map(r => ({m: r.dataset.machine, f: f(r)})),
        paths: document.querySelectorAll('svg.chart path.series').length,
        updates: Number(document.body.dataset.updates || 0)};
"""


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def _running(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The demo process, killed on the way out if a check failed while it ran."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ctrl_c(proc: subprocess.Popen[bytes], log: Path) -> str:
    """SIGINT, as a terminal's Ctrl-C: the demo stops with exit 0; its whole output."""
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0, log.read_text(errors="replace")[-3000:]
    return log.read_text(errors="replace")


def _kpis(url: str) -> dict[str, Any] | None:
    try:
        cat: dict[str, Any] = httpx.get(f"{url}/api/v1/catalogue", timeout=5).json()
    except httpx.HTTPError:
        return None
    seen = [s["last_seen"] for s in cat.get("signals", []) if s["signal"] == "state"]
    if len(cat.get("machines", [])) < 4 or not seen:
        return None
    return cat


def test_demo_dashboard_shows_live_data_and_kpis_then_ctrl_c_stops_cleanly(
        tmp_path: Path, browser: webdriver.Chrome) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    with _running(spawn("demo", "--duration", "150", "--speed", "30", "--port", str(port), cwd=tmp_path,
                        log=log)) as proc:
        _wait(lambda: f"{url}/" in log.read_text(errors="replace") or proc.poll() is not None, 180,
              "the demo to print its URL")
        assert proc.poll() is None, log.read_text(errors="replace")
        _wait(lambda: _kpis(url), 60, "all four machines in the catalogue")
        time.sleep(12)  # more than a minute of simulated data at --speed 30
        browser.get(f"{url}/")
        try:
            snap = WebDriverWait(browser, 60).until(
                lambda d: (s := d.execute_script(TILES)) and s["updates"] >= 2 and s["paths"] > 0
                and s["tiles"].get("oee") not in (None, "", "null") and len(s["rows"]) == 4 and s)
        except TimeoutException:
            browser.save_screenshot(str(ARTIFACTS / "demo-dashboard-timeout.png"))
            raise AssertionError(f"dashboard incomplete: {browser.execute_script(TILES)}; "
                                 f"console {browser.get_log('browser')}") from None  # type: ignore[no-untyped-call]
        first = snap["updates"]
        WebDriverWait(browser, 30).until(lambda d: d.execute_script(TILES)["updates"] > first)  # live
        time.sleep(1)
        browser.save_screenshot(str(ARTIFACTS / "demo-dashboard.png"))
        snap = browser.execute_script(TILES)
        oee = float(snap["tiles"]["oee"])
        assert 0.0 < oee <= 1.0
        assert float(snap["tiles"]["good_count"]) > 0
        assert {r["m"].rsplit("/", 1)[1] for r in snap["rows"]} == {"cnc-1", "imm-1", "pack-1", "comp-1"}
        # the page shows what the KPI API says for the same query
        tiles = browser.find_element(By.CSS_SELECTOR, ".overview .tiles")
        q = {"scope": tiles.get_attribute("data-kpi-scope"), "from": tiles.get_attribute("data-kpi-from"),
             "to": tiles.get_attribute("data-kpi-to")}
        assert q["scope"] == LINE
        rep = httpx.get(f"{url}/api/v1/kpis", params=q, timeout=30).json()
        api_line = next(ln for ln in rep["windows"][-1]["lines"] if ln["line"] == LINE)
        assert api_line["good_count"] >= float(snap["tiles"]["good_count"])
        out = _ctrl_c(proc, log)
    assert "stopped cleanly (interrupted)" in out, out[-3000:]
    m = re.search(r"(\d+) samples read, (\d+) delivered, nothing left in the buffer", out)
    assert m is not None and int(m.group(1)) == int(m.group(2)) > 10_000, out[-2000:]


def test_ctrl_c_while_the_models_train_ends_the_training_instead_of_waiting(tmp_path: Path) -> None:
    """The demo's models train for about 30 s in a worker process; a Ctrl-C before then stops the
    demo cleanly and ends that worker (it used to be joined: the demo hung until training ended)."""
    port = free_port()
    log = tmp_path / "demo.log"
    with _running(spawn("demo", "--speed", "30", "--port", str(port), cwd=tmp_path, log=log)) as proc:
        _wait(lambda: f"127.0.0.1:{port}/" in log.read_text(errors="replace") or proc.poll() is not None,
              180, "the demo to print its URL")
        assert proc.poll() is None, log.read_text(errors="replace")
        assert "no anomaly models" not in log.read_text(errors="replace")
        out = _ctrl_c(proc, log)
    assert "model training ended unfinished (the demo stopped first)" in out, out[-3000:]
    assert "stopped cleanly (interrupted)" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


def test_a_port_in_use_is_named_and_the_demo_exits_1(tmp_path: Path) -> None:
    """Another server holds the port: one line naming it, exit 1, no traceback (uvicorn used to
    raise SystemExit(3) out of the event loop, after a minute of tracebacks)."""
    from tests.e2e.conftest import zhizao

    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        run = zhizao("demo", "--port", str(port), cwd=tmp_path, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert f"could not start: ingest cannot listen on http://127.0.0.1:{port}" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize("args", [["--speed", "0"], ["--port", "x"]])
def test_demo_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    from tests.e2e.conftest import zhizao

    run = zhizao("demo", *args, cwd=tmp_path, timeout=30)
    assert run.returncode == 2
