"""The built-in web dashboard in headless Chromium against the filled stack: live updates, shown
values equal to the API's, a screenshot of each page, the faulty machine's anomaly on its page."""

from __future__ import annotations

import json
from typing import Any

import httpx
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboards.conftest import Stack
from tests.dashboards.fill import FAULTY
from tests.support.browser import ARTIFACTS

LINE = "plant1/a1/line1"


def _updates(driver: webdriver.Chrome) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-updates") or 0)


def _wait_updates(driver: webdriver.Chrome, n: int, timeout: float = 30) -> None:
    try:
        WebDriverWait(driver, timeout).until(lambda d: _updates(d) >= n)
    except TimeoutException:
        logs = driver.get_log("browser")  # type: ignore[no-untyped-call]
        raise AssertionError(f"page did not refresh {n} times; status {_status(driver)!r}; "
                             f"console {logs}") from None


def _status(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "status").text


SNAPSHOT = """
const view = document.querySelector(arguments[0]);
if (!view) return null;
const fields = root => Object.fromEntries([...root.querySelectorAll('[data-field]')].map(
  e => [e.dataset.field, {value: e.dataset.value, text: e.textContent}]));
const tiles = view.querySelector('.tiles');
const k = tiles.dataset;
return {
  kpi: {scope: k.kpiScope, from: k.kpiFrom, to: k.kpiTo, window: k.kpiWindow},
  rows: [...view.querySelectorAll('tr[data-machine]')].map(
    r => ({machine: r.dataset.machine, fields: fields(r)})),
  tiles: fields(tiles),
  heading: fields(view.querySelector('h1')),
  banner: view.querySelector('.banner') ? {value: view.querySelector('.banner').dataset.value,
                                           text: view.querySelector('.banner').textContent} : null,
  events: [...view.querySelectorAll('[data-event]')].map(e => e.dataset.event),
  paths: [...view.querySelectorAll('svg.chart path.series')].map(p => p.getAttribute('d')),
  charts: [...view.querySelectorAll('[data-chart]')].map(c => c.dataset.chart),
  anomaly_paths: [...view.querySelectorAll('[data-chart-anomaly] path.series')].map(p => p.getAttribute('d')),
};
"""


def _snapshot(driver: webdriver.Chrome, selector: str) -> dict[str, Any]:
    """Everything the checks read, taken in one script run (the page re-renders on every poll)."""
    snap: dict[str, Any] | None = driver.execute_script(SNAPSHOT, selector)
    assert snap is not None, f"{selector} not on the page; status {_status(driver)!r}"
    return snap


def _kpis(client: httpx.Client, query: dict[str, str]) -> dict[str, Any]:
    """The KPI report for exactly the query the page made."""
    resp = client.get("/api/v1/kpis", params={"scope": query["scope"], "group_by": "shift",
                                              "from": query["from"], "to": query["to"]})
    resp.raise_for_status()
    window: dict[str, Any] = resp.json()["windows"][-1]
    assert window["window"] == query["window"]
    return window


def _latest(client: httpx.Client, asset: str) -> dict[str, Any]:
    return {v["signal"]: v for v in client.get("/api/v1/latest", params={"asset": asset}).json()["values"]}


def test_overview_shows_live_values_equal_to_the_api(stack: Stack, browser: webdriver.Chrome) -> None:
    browser.get(f"{stack.url}/#/line/{LINE}")
    _wait_updates(browser, 1)
    first = _updates(browser)
    _wait_updates(browser, first + 1)  # it polls: live updates without a reload
    assert "live" in _status(browser)
    snap = _snapshot(browser, ".overview")
    browser.save_screenshot(str(ARTIFACTS / "web-dashboard-overview.png"))
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        machines = [r["machine"] for r in snap["rows"]]
        assert machines == [m for m in sorted(stack.filled.machines) if m.startswith(LINE + "/")]
        window = _kpis(client, snap["kpi"])
        records = {m["machine"]: m for m in window["machines"]}
        for row in snap["rows"]:
            asset, f = row["machine"], row["fields"]
            latest = _latest(client, asset)
            assert f["state"]["value"] == f["state"]["text"] == latest["state"]["value"], asset
            assert float(f["oee"]["value"]) == records[asset]["oee"], asset
            assert f["oee"]["text"] == f"{100 * records[asset]['oee']:.1f} %", asset
            assert float(f["power_kw"]["value"]) == latest["power_kw"]["value"], asset
            assert float(f["anomaly_score"]["value"]) == latest["anomaly_score"]["value"], asset
        line = {ln["line"]: ln for ln in window["lines"]}[LINE]
        for name in ("oee", "availability", "performance", "quality", "kwh_per_good_part", "good_count"):
            assert float(snap["tiles"][name]["value"]) == line[name], name
        events = client.get("/api/v1/events", params={"asset": LINE, "state": "open"}).json()["events"]
        assert sorted(snap["events"]) == sorted(e["id"] for e in events)
        assert len(snap["paths"]) >= len(machines)  # one power line per machine at least
        assert all(snap["paths"])


def test_machine_page_shows_the_injected_fault_as_an_anomaly(stack: Stack, browser: webdriver.Chrome) -> None:
    browser.get(f"{stack.url}/#/machine/{FAULTY}")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f".machine[data-machine='{FAULTY}']"))
    snap = _snapshot(browser, ".machine")
    browser.save_screenshot(str(ARTIFACTS / "web-dashboard-machine.png"))
    assert snap["banner"]["value"] == "true", snap["banner"]
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        events = client.get("/api/v1/events", params={"asset": FAULTY, "state": "open",
                                                      "source": "anomaly"}).json()["events"]
        assert events, "the fill opened an anomaly episode on the faulty machine"
        assert events[0]["contributors"][0]["signal"] in snap["banner"]["text"]
        latest = _latest(client, FAULTY)
        assert float(snap["tiles"]["anomaly_score"]["value"]) == latest["anomaly_score"]["value"]
        assert latest["anomaly_score"]["value"] >= 0.5
        assert snap["heading"]["state"]["value"] == latest["state"]["value"]
        window = _kpis(client, snap["kpi"])
        records = {m["machine"]: m for m in window["machines"]}
        assert float(snap["tiles"]["oee"]["value"]) == records[FAULTY]["oee"]
    assert {"melt_temp", "mould_temp", "power_kw"} <= set(snap["charts"])
    assert len(snap["anomaly_paths"]) == 1 and snap["anomaly_paths"][0], "the anomaly score is charted"
    assert all(snap["paths"])


def test_endpoints_the_page_reads_return_data(stack: Stack) -> None:
    """Every API call the page makes, with its parameters, answers with data (not just 200)."""
    end = stack.filled.end.isoformat()
    start = stack.filled.start.isoformat()
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert client.get("/ui/config.json").json()["kpi_path"] == "/api/v1/kpis"
        for name in ("app.js", "charts.js", "style.css"):
            assert client.get(f"/ui/{name}").status_code == 200
        assert client.get("/ui/../router.py").status_code == 404
        cat = client.get("/api/v1/catalogue").json()
        assert {s["asset"] for s in cat["signals"] if s["signal"] == "state"} == set(stack.filled.machines)
        kpis = client.get("/api/v1/kpis", params={"scope": LINE, "from": start, "to": end,
                                                  "group_by": "shift"}).json()
        w = kpis["windows"][-1]
        assert w["machines"] and all(m["oee"] is not None for m in w["machines"])
        assert [ln["line"] for ln in w["lines"]] == [LINE]
        queries: list[dict[str, str | int]] = [{"asset": LINE, "state": "open"},
                                               {"asset": FAULTY, "limit": 20}]
        for params in queries:
            assert client.get("/api/v1/events", params=params).json()["events"], params
        every = client.get("/api/v1/events", params={"asset": "plant1"}).json()["events"]
        kinds = {e["source"] for e in every}
        assert kinds == {"kpi", "anomaly"}
        for signal, agg in (("power_kw", "mean"), ("anomaly_score", "max")):
            series = client.get("/api/v1/series", params={"asset": LINE, "signal": signal, "start": start,
                                                          "end": end, "agg": agg, "bucket": "10s",
                                                          "epoch": "ms"}).json()["series"]
            assert series and all(len(s["values"]) > 0 for s in series), signal
        assert json.dumps(client.get("/api/v1/latest", params={"asset": FAULTY}).json()["values"])
