"""The built-in web dashboard in headless Chromium against the filled stack: live updates, shown
values equal to the API's, a screenshot of each page, the faulty machine's anomaly on its page; a
compressor's OEE shown as not applicable, key signals without zhizao's own series, contributors
without 0 % entries, the line's summed good parts explained, KPI data-quality warnings."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboards.conftest import Stack
from tests.dashboards.fill import FAULTY
from tests.support.browser import ARTIFACTS
from zhizao.events import Contributor, Event, EventSource, EventState, Severity

LINE = "plant1/a1/line1"
LINE2 = "plant1/a1/line2"
COMPRESSOR = "plant1/a1/line1/comp-1"
SHOTS = Path("/tmp/dash_review")


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
  e => [e.dataset.field, {value: e.dataset.value, text: e.textContent, na: e.dataset.na || null,
                          title: e.getAttribute('title')}]));
const note = view.querySelector('[data-note]');
const tiles = view.querySelector('.tiles');
const k = tiles.dataset;
return {
  kpi: {scope: k.kpiScope, from: k.kpiFrom, to: k.kpiTo, window: k.kpiWindow},
  rows: [...view.querySelectorAll('tr[data-machine]')].map(
    r => ({machine: r.dataset.machine, fields: fields(r),
           signals: [...r.querySelectorAll('[data-signal]')].map(e => e.dataset.signal)})),
  tiles: fields(tiles),
  tile_titles: Object.fromEntries([...tiles.querySelectorAll('.tile')].map(
    t => [t.querySelector('[data-field]').dataset.field, t.getAttribute('title')])),
  note: note ? {text: note.textContent, visible: note.offsetParent !== null && note.offsetHeight > 0} : null,
  contributors: [...view.querySelectorAll('.contrib')].map(e => e.textContent),
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
        derived = client.get("/ui/config.json").json()["derived_prefixes"]
        for row in snap["rows"]:
            asset, f = row["machine"], row["fields"]
            latest = _latest(client, asset)
            assert f["state"]["value"] == f["state"]["text"] == latest["state"]["value"], asset
            assert float(f["oee"]["value"]) == records[asset]["oee"], asset
            if records[asset]["producing"]:
                assert f["oee"]["text"] == f"{100 * records[asset]['oee']:.1f} %", asset
                assert f["good_count"]["text"] == str(records[asset]["good_count"]), asset
            else:  # a compressor: its OEE of 0 is no measurement
                for name in ("oee", "good_count"):
                    assert (f[name]["text"], f[name]["na"]) == ("–", "no-production"), (asset, name)
                    assert "makes no parts" in f[name]["title"], (asset, name)
            assert float(f["power_kw"]["value"]) == latest["power_kw"]["value"], asset
            assert float(f["anomaly_score"]["value"]) == latest["anomaly_score"]["value"], asset
            # Key signals: the machine's own process signals, never zhizao's derived series.
            assert len(row["signals"]) == 3 and row["signals"] == sorted(row["signals"]), asset
            assert not [s for s in row["signals"] if s.startswith(tuple(derived))], (asset, row["signals"])
            assert any(s.startswith(tuple(derived)) and s != "anomaly_score" for s in latest), asset
        assert [r["machine"] for r in snap["rows"] if not records[r["machine"]]["producing"]] == [COMPRESSOR]
        line = {ln["line"]: ln for ln in window["lines"]}[LINE]
        for name in ("oee", "availability", "performance", "quality", "kwh_per_good_part", "good_count"):
            assert float(snap["tiles"][name]["value"]) == line[name], name
        # The line's good parts add unlike parts: the page says so, under the tiles and on them.
        assert snap["note"] is not None and snap["note"]["visible"], snap["note"]
        assert "unlike parts" in snap["note"]["text"] and "kWh / good part" in snap["note"]["text"]
        assert all(p in snap["note"]["text"] for p in line["count_by_product"]), snap["note"]
        for name in ("good_count", "kwh_per_good_part"):
            assert "unlike parts" in (snap["tile_titles"][name] or ""), name
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
        assert snap["tiles"]["oee"]["text"] == f"{100 * records[FAULTY]['oee']:.1f} %"
        shown = [c for c in events[0]["contributors"] if round(100 * c["weight"]) >= 1][:3]
        assert snap["contributors"][0] == " — driven by " + ", ".join(
            f"{c['signal']} ({100 * c['weight']:.0f} %)" for c in shown)  # the banner, then the events
    assert {"melt_temp", "mould_temp", "power_kw"} <= set(snap["charts"])
    # both models' scores (health, and energy: imm-1 reports power_kw) on the anomaly chart
    assert len(snap["anomaly_paths"]) == 2 and all(snap["anomaly_paths"]), "the anomaly scores are charted"
    assert all(snap["paths"])


def test_endpoints_the_page_reads_return_data(stack: Stack) -> None:
    """Every API call the page makes, with its parameters, answers with data (not just 200)."""
    end = stack.filled.end.isoformat()
    start = stack.filled.start.isoformat()
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        config = client.get("/ui/config.json").json()
        assert config["kpi_path"] == "/api/v1/kpis"
        from zhizao.signals import DERIVED_PREFIXES  # what zhizao check counts as derived too

        assert config["derived_prefixes"] == list(DERIVED_PREFIXES)
        assert "scrap_probability".startswith(tuple(config["derived_prefixes"]))
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


def _open(driver: webdriver.Chrome, url: str, selector: str) -> dict[str, Any]:
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    return _snapshot(driver, selector.split("[", maxsplit=1)[0])


def _shot(driver: webdriver.Chrome, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for folder in (ARTIFACTS, SHOTS):
        driver.save_screenshot(str(folder / name))


def test_compressor_page_shows_production_kpis_as_not_applicable(stack: Stack,
                                                                 browser: webdriver.Chrome) -> None:
    """comp-1 makes no parts: OEE, Performance and Quality are "–" with the reason, not 0 % / 100 %;
    its availability is a real figure and stays."""
    snap = _open(browser, f"{stack.url}/#/machine/{COMPRESSOR}", f".machine[data-machine='{COMPRESSOR}']")
    _shot(browser, "web-dashboard-compressor.png")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        rec = {m["machine"]: m for m in _kpis(client, snap["kpi"])["machines"]}[COMPRESSOR]
    assert rec["producing"] is False and (rec["oee"], rec["performance"], rec["quality"]) == (0.0, 0.0, 1.0)
    for name in ("oee", "performance", "quality"):
        t = snap["tiles"][name]
        assert (t["text"], t["na"], float(t["value"])) == ("–", "no-production", rec[name]), name
        assert "makes no parts" in t["title"] and "line's OEE" in t["title"], name
    assert snap["tiles"]["availability"]["text"] == f"{100 * rec['availability']:.1f} %"
    assert snap["tiles"]["availability"]["na"] is None


def test_contributors_that_round_to_zero_percent_are_left_out(stack: Stack,
                                                              browser: webdriver.Chrome) -> None:
    """An anomaly driven by one signal lists that one (and a 1 % one), not a tail of "0 %"."""
    asset = f"{LINE2}/asm-1"
    ev = Event(id="anomaly:test-contributors", source=EventSource.ANOMALY, rule="robust_z", asset=asset,
               severity=Severity.CRITICAL, start=stack.filled.end - timedelta(minutes=5), value=0.9,
               threshold=0.5, message="process signals far from normal operation",
               contributors=[Contributor(signal="vibration_rms", weight=0.985),
                             Contributor(signal="motor_current", weight=0.011),
                             Contributor(signal="conveyor_speed", weight=0.004)])
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        client.post("/api/v1/events", json=[ev.model_dump(mode="json")]).raise_for_status()
        try:
            page = _open(browser, f"{stack.url}/#/machine/{asset}", f".machine[data-machine='{asset}']")
            assert page["banner"]["value"] == "true"
            assert page["contributors"] == [" — driven by vibration_rms (99 %), motor_current (1 %)",
                                            " — vibration_rms 99 %, motor_current 1 %"]  # banner, events
            line = _open(browser, f"{stack.url}/#/line/{LINE2}", f".overview [data-event='{ev.id}']")
            assert " — vibration_rms 99 %, motor_current 1 %" in line["contributors"], line["contributors"]
            assert not [c for c in line["contributors"] if " 0 %" in c]
        finally:
            done = ev.model_copy(update={"state": EventState.RESOLVED, "end": stack.filled.end})
            client.post("/api/v1/events", json=[done.model_dump(mode="json")]).raise_for_status()


def test_machines_with_kpi_data_quality_problems_are_marked(stack: Stack, browser: webdriver.Chrome) -> None:
    """Line 2's packer has gaps and a skewed clock in its KPI inputs: a warning on its row naming
    them; a machine whose KPI data quality is ok (its flags, if any, are gaps in series no KPI reads,
    such as zhizao's own anomaly scores) gets none, and those flags are never named."""
    snap = _open(browser, f"{stack.url}/#/line/{LINE2}",
                 f".overview[data-kpi-scope='{LINE2}'] tr[data-machine]")
    _shot(browser, "web-dashboard-line2.png")
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        records = {m["machine"]: m for m in _kpis(client, snap["kpi"])["machines"]}
    marked = {}
    for row in snap["rows"]:
        rec, f = records[row["machine"]], row["fields"]
        assert rec["data_quality"]["flags"], row["machine"]  # every machine has some flag ...
        assert ("data_quality" in f) == (not rec["data_quality"]["ok"]), row["machine"]  # ... not all matter
        if "data_quality" in f:
            marked[row["machine"]] = f["data_quality"]["title"]
            assert f["data_quality"]["title"].startswith("KPI data quality: ")
            for flag in rec["data_quality"]["flags"]:
                named = flag["kind"].replace("_", " ") + (f" of {flag['signal']}" if "signal" in flag else "")
                assert (named in f["data_quality"]["title"]) == (flag.get("kpi_input") is not False), named
    # The packer's skewed clock; its anomaly-score gaps are not named (checked above). Others may be
    # marked too: the page's window ends at the newest data, past the last state sample of a replay.
    assert "clock skew" in marked[f"{LINE2}/pack-1"], marked


CHART = """
const s = {name: 'a', ts: [0, 1000, 2000, 3000, 60000, 61000, 62000], values: [1, 2, 3, 2, 1, null, 2]};
const svg = ZCharts.lineChart([s], {start: 0, end: 62000});
return svg.querySelector('path.series').getAttribute('d');
"""


def test_a_chart_breaks_its_line_where_the_data_stops(stack: Stack, browser: webdriver.Chrome) -> None:
    """No straight line drawn across a stretch without data (an unscored stop), nor across a null:
    a new subpath starts after a step longer than 3x the series' median step."""
    browser.get(f"{stack.url}/#/line/{LINE}")
    _wait_updates(browser, 1)
    d: str = browser.execute_script(CHART)
    pens = [part[0] for part in d.replace("M", "|M").replace("L", "|L").split("|") if part]
    assert pens == ["M", "L", "L", "L", "M", "M"], d  # 3 s -> 60 s: new subpath; null: new subpath
