"""The web dashboard after the plant-manager review (helper-81), in headless Chromium against the
filled stack: the Programme view shows what ``GET /api/v1/kpis/improvement`` says; every anomaly
model on the anomaly chart (not among process signals), every open episode in the banner; an
unknown line shown as the API's 404, not as "not mounted"; small figures with three significant
figures; the KPI tiles name their period with explicit UTC offsets; the machine's good parts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.dashboards.conftest import Stack
from tests.dashboards.fill import FAULTY
from tests.support.browser import ARTIFACTS
from zhizao.events import Contributor, Event, EventSource, EventState, Severity

LINE = "plant1/a1/line1"
COMPRESSOR = "plant1/a1/line1/comp-1"
OFFSET = re.compile(r"GMT([+\-−]\d{1,2}(:\d\d)?)?|UTC")


def _status(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.ID, "status").text)


def _wait(driver: webdriver.Chrome, selector: str, timeout: float = 60) -> None:
    try:
        WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    except TimeoutException:
        logs = driver.get_log("browser")  # type: ignore[no-untyped-call]
        raise AssertionError(f"{selector} never shown; status {_status(driver)!r}; console {logs}") from None


PROGRAMME = """
const view = document.querySelector('.programme-view');
if (!view) return null;
const table = sec => Object.fromEntries([...sec.querySelectorAll('tr[data-metric]')].map(
  r => [r.dataset.metric, Object.fromEntries([...r.querySelectorAll('[data-field]')].map(
    e => [e.dataset.field, {value: e.dataset.value, text: e.textContent}]))]));
const dq = view.querySelector(':scope > [data-field=data_quality]');
const one = sel => view.querySelector(sel);
return {
  periods: {baseline_from: view.dataset.baselineFrom, baseline_to: view.dataset.baselineTo,
            from: view.dataset.from, to: view.dataset.to},
  scopes: [...view.querySelectorAll('section.programme-scope')].map(s => ({scope: s.dataset.scope,
    all_met: s.dataset.allMet, dq_ok: s.dataset.dataQualityOk, metrics: table(s)})),
  line_warnings: [...view.querySelectorAll('[data-line] h2 [data-field=data_quality]')].map(
    e => e.closest('[data-line]').dataset.line),
  dq: dq ? dq.textContent : null,
  all_met: one('[data-field=all_met]') ? one('[data-field=all_met]').dataset.value : null,
  error: one('[data-field=programme-error]') ? one('[data-field=programme-error]').textContent : null,
  periods_text: one('[data-periods]') ? one('[data-periods]').textContent : null,
};
"""


def _programme(driver: webdriver.Chrome, url: str,
               ready: str = ".programme-view table.programme") -> dict[str, Any]:
    driver.get("about:blank")  # a fresh page: no view of an earlier query left on screen
    driver.get(url)
    _wait(driver, ready)
    snap: dict[str, Any] | None = driver.execute_script(PROGRAMME)
    assert snap is not None, _status(driver)
    return snap


def _same(shown: dict[str, Any], metric: dict[str, Any]) -> None:
    for name in ("baseline", "current", "change_pct", "target"):
        value = metric[name]
        assert shown[name]["value"] == ("" if value is None else str(value)) or (
            value is not None and float(shown[name]["value"]) == value), (metric["metric"], name, shown[name])
    met = metric["met"]
    want = "null" if met is None else str(met).lower()
    assert shown["met"]["value"] == want, (metric["metric"], shown["met"])
    assert shown["met"]["text"] == {True: "met", False: "not met", None: "not judged"}[met]
    if metric["change_pct"] is not None:
        sign = "+" if metric["change_pct"] > 0 else "−" if metric["change_pct"] < 0 else "±"
        assert shown["change_pct"]["text"] == f"{sign}{abs(metric['change_pct']):.1f} %"
    if "efficiency_gain_pct" in metric:
        assert float(shown["efficiency_gain_pct"]["value"]) == metric["efficiency_gain_pct"]


def _periods(stack: Stack) -> dict[str, str]:
    start, end = stack.filled.start, stack.filled.end
    mid = start + (end - start) / 2
    return {"baseline_from": start.isoformat(), "baseline_to": mid.isoformat(),
            "from": mid.isoformat(), "to": end.isoformat()}


@pytest.mark.parametrize("scope", [LINE, "plant1"])
def test_programme_view_shows_the_improvement_report(stack: Stack, browser: webdriver.Chrome,
                                                      scope: str) -> None:
    """Per metric: baseline, current, change, target and met exactly as the API says for the periods
    in the address; every line of a site its own table; the data-quality warning iff the API's
    data_quality_ok is false."""
    periods = _periods(stack)
    snap = _programme(browser, f"{stack.url}/#/programme/{scope}?{urlencode(periods)}")
    browser.save_screenshot(str(ARTIFACTS / f"web-dashboard-programme-{scope.replace('/', '-')}.png"))
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        resp = client.get("/api/v1/kpis/improvement", params={"scope": scope, **periods})
        resp.raise_for_status()
        rep = resp.json()
    assert snap["error"] is None and snap["periods"] == periods
    scopes = {s["scope"]: s for s in snap["scopes"]}
    want = [scope] + ([ln["line"] for ln in rep["lines"]] if scope != LINE else [])
    assert list(scopes) == want, (list(scopes), want)
    for name, part in [(scope, rep), *[(ln["line"], ln) for ln in rep["lines"] if scope != LINE]]:
        shown = scopes[name]
        assert list(shown["metrics"]) == [m["metric"] for m in part["metrics"]] == [
            "energy_efficiency", "operating_cost", "productivity"]
        assert any(m["met"] is not None for m in part["metrics"]), "the periods hold data: judged targets"
        for metric in part["metrics"]:
            _same(shown["metrics"][metric["metric"]], metric)
        assert (shown["all_met"], shown["dq_ok"]) == (str(part["all_met"]).lower(),
                                                     str(part["data_quality_ok"]).lower()), name
    assert snap["all_met"] == str(rep["all_met"]).lower()
    assert (snap["dq"] is not None) == (rep["data_quality_ok"] is False), snap["dq"]
    if scope != LINE:
        bad = [ln["line"] for ln in rep["lines"] if ln["data_quality_ok"] is False]
        assert bad, "line2's packer has gaps and a skewed clock: the warning is exercised"
        assert snap["line_warnings"] == bad
        assert snap["dq"] is not None and "Data quality" in snap["dq"], snap["dq"]
        assert "clock skew" in snap["dq"], snap["dq"]
    text = snap["periods_text"]
    assert text is not None and len(OFFSET.findall(text)) == 4, text  # every time with its offset


def test_programme_view_defaults_to_the_previous_7_days_against_the_7_before(
        stack: Stack, browser: webdriver.Chrome) -> None:
    """Without periods in the address: plain dates, the previous 7 whole days (UTC) against the 7
    before. The fill's 40 minutes are today: no figure, every target "not judged" (null)."""
    snap = _programme(browser, f"{stack.url}/#/programme/{LINE}")
    today = datetime.now(UTC).date()
    day = timedelta(days=1)
    assert snap["periods"] == {"baseline_from": str(today - 14 * day), "baseline_to": str(today - 7 * day),
                               "from": str(today - 7 * day), "to": str(today)}
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        rep = client.get("/api/v1/kpis/improvement", params={"scope": LINE, **snap["periods"]}).json()
    metrics = snap["scopes"][0]["metrics"]
    for metric in rep["metrics"]:
        _same(metrics[metric["metric"]], metric)
    assert [m["met"] for m in rep["metrics"]] == [None, None, None]


def test_programme_view_periods_can_be_set_and_bad_ones_show_the_api_message(
        stack: Stack, browser: webdriver.Chrome) -> None:
    periods = _periods(stack)
    snap = _programme(browser, f"{stack.url}/#/programme/{LINE}")
    for name, value in periods.items():
        box = browser.find_element(By.CSS_SELECTOR, f"form.periods input[name={name}]")
        box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "form.periods button").click()
    WebDriverWait(browser, 60).until(lambda d: (d.execute_script(PROGRAMME) or {}).get("periods") == periods)
    _wait(browser, ".programme-view table.programme")
    snap = browser.execute_script(PROGRAMME)
    assert any(m["met"]["value"] != "null" for m in snap["scopes"][0]["metrics"].values()), snap
    bad = {**periods, "to": "2026-13-45"}
    snap = _programme(browser, f"{stack.url}/#/programme/{LINE}?{urlencode(bad)}",
                      "[data-field=programme-error]")
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        resp = client.get("/api/v1/kpis/improvement", params={"scope": LINE, **bad})
    assert resp.status_code == 422
    assert snap["error"] and "to" in snap["error"], snap["error"]
    snap = _programme(browser, f"{stack.url}/#/programme/plant1/a1/nope?{urlencode(periods)}",
                      "[data-field=programme-error]")
    assert "no machine under 'plant1/a1/nope'" in snap["error"], snap["error"]


MACHINE = """
const view = document.querySelector('.machine');
if (!view) return null;
const anomaly = view.querySelector('[data-chart-anomaly]');
return {
  charts: [...view.querySelectorAll('[data-chart]')].map(c => c.dataset.chart),
  latest: [...view.querySelectorAll('table.latest tr[data-signal]')].map(r => r.dataset.signal),
  anomaly_legend: [...anomaly.querySelectorAll('.legend span')].map(s => s.textContent),
  anomaly_paths: [...anomaly.querySelectorAll('path.series')].map(p => p.getAttribute('d')),
  threshold: anomaly.querySelectorAll('line.threshold').length,
  banner: {value: view.querySelector('.banner').dataset.value,
           text: view.querySelector('.banner').textContent,
           episodes: [...view.querySelectorAll('.banner [data-episode]')].map(e => e.dataset.episode)},
  tiles: Object.fromEntries([...view.querySelectorAll('.tiles [data-field]')].map(
    e => [e.dataset.field, {value: e.dataset.value, text: e.textContent, na: e.dataset.na || null}])),
  kpi: {...view.querySelector('.tiles').dataset},
};
"""


def _machine(driver: webdriver.Chrome, url: str, asset: str, until: str = "") -> dict[str, Any]:
    driver.get("about:blank")
    driver.get(url)
    _wait(driver, f".machine[data-machine='{asset}'] [data-chart-anomaly] path.series{until}")
    snap: dict[str, Any] | None = driver.execute_script(MACHINE)
    assert snap is not None
    return snap


def _score_signals(client: httpx.Client, asset: str) -> list[str]:
    cat = client.get("/api/v1/catalogue").json()["signals"]
    return sorted({s["signal"] for s in cat
                   if s["asset"] == asset and s["signal"].startswith("anomaly_score")})


def test_every_anomaly_model_is_on_the_anomaly_chart_and_every_open_episode_in_the_banner(
        stack: Stack, browser: webdriver.Chrome) -> None:
    """anomaly_score.energy is the energy model's score: on the anomaly chart with the threshold,
    not a process-signal chart nor a latest value; an open energy episode beside the health one:
    the banner names both."""
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        models = _score_signals(client, FAULTY)
        assert models == ["anomaly_score", "anomaly_score.energy"], models
        ev = Event(id="anomaly:test-energy-episode", source=EventSource.ANOMALY, rule="energy", asset=FAULTY,
                   severity=Severity.CRITICAL, start=stack.filled.end - timedelta(minutes=3), value=0.93,
                   threshold=0.5, message="power far from what state and load explain",
                   contributors=[Contributor(signal="power_kw", weight=1.0)])
        client.post("/api/v1/events", json=[ev.model_dump(mode="json")]).raise_for_status()
        try:
            snap = _machine(browser, f"{stack.url}/#/machine/{FAULTY}", FAULTY)
            browser.save_screenshot(str(ARTIFACTS / "web-dashboard-machine-models.png"))
            open_ = client.get("/api/v1/events", params={"asset": FAULTY, "state": "open",
                                                         "source": "anomaly"}).json()["events"]
            values = client.get("/api/v1/latest", params={"asset": FAULTY}).json()["values"]
            latest = {v["signal"]: v for v in values}
        finally:
            done = ev.model_copy(update={"state": EventState.RESOLVED, "end": stack.filled.end})
            client.post("/api/v1/events", json=[done.model_dump(mode="json")]).raise_for_status()
    assert not [c for c in snap["charts"] if c.startswith("anomaly")], snap["charts"]
    assert not [s for s in snap["latest"] if s.startswith("anomaly_score")], snap["latest"]
    assert snap["anomaly_legend"] == ["health", "energy"], snap["anomaly_legend"]
    assert len(snap["anomaly_paths"]) == 2 and all(snap["anomaly_paths"]), snap["anomaly_paths"]
    assert snap["threshold"] == 1
    for signal in models:
        assert float(snap["tiles"][signal]["value"]) == latest[signal]["value"], signal
    assert len(open_) >= 2 and ev.id in {e["id"] for e in open_}
    assert snap["banner"]["value"] == "true"
    assert sorted(snap["banner"]["episodes"]) == sorted(e["id"] for e in open_), snap["banner"]
    assert "energy since" in snap["banner"]["text"] and "power_kw (100 %)" in snap["banner"]["text"]
    for e in open_:
        assert f"{e['rule']} since" in snap["banner"]["text"], e["rule"]


def test_overview_anomaly_chart_has_every_model(stack: Stack, browser: webdriver.Chrome) -> None:
    browser.get("about:blank")
    browser.get(f"{stack.url}/#/line/{LINE}")
    _wait(browser, ".overview [data-chart-anomaly] .legend span")
    legend = browser.execute_script(
        "return [...document.querySelectorAll('.overview [data-chart-anomaly] .legend span')]"
        ".map(s => s.textContent)")
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        cat = client.get("/api/v1/catalogue").json()["signals"]
    name = {"anomaly_score": ""}
    want = {s["asset"].rsplit("/", 1)[1] + name.get(s["signal"], " · " + s["signal"][14:])
            for s in cat if s["asset"].startswith(LINE + "/") and s["signal"].startswith("anomaly_score")}
    # what has scores in the chart's last minutes (a machine stopped there has none): both models
    assert set(legend) <= want, (legend, want)
    assert [n for n in legend if " · energy" in n] and [n for n in legend if " · " not in n], legend


def test_an_unknown_line_shows_the_apis_404_not_a_missing_router(stack: Stack,
                                                                 browser: webdriver.Chrome) -> None:
    scope = "plant1/a1/nope"
    browser.get("about:blank")
    browser.get(f"{stack.url}/#/line/{scope}")
    _wait(browser, f".overview[data-kpi-scope='{scope}']")
    _wait(browser, "[data-field=kpi-error]")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-field=kpi-missing]")
    shown = browser.find_element(By.CSS_SELECTOR, "[data-field=kpi-error]").text
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        resp = client.get("/api/v1/kpis", params={"scope": scope, "from": stack.filled.start.isoformat(),
                                                  "to": stack.filled.end.isoformat()})
    assert resp.status_code == 404
    assert resp.json()["detail"] in shown and "not mounted" not in shown, shown
    assert "known lines" in shown and LINE in shown


FMT = "return arguments[0].map(v => ZCharts.fmt(v))"


def test_small_figures_keep_three_significant_figures(stack: Stack, browser: webdriver.Chrome) -> None:
    """kWh per part of 0.00748, 0.0596 and 0.0575 were all "0.01" / "0.06"; large ones unchanged."""
    browser.get("about:blank")
    browser.get(f"{stack.url}/#/line/{LINE}")
    _wait(browser, ".overview tr[data-machine]")
    got = browser.execute_script(FMT, [0.00748, 0.0596, 0.0575, 0.5, 0.123456, 3.14159, 12.345, 1234.5, 7, 0,
                                       -0.0421])
    assert got == ["0.00748", "0.0596", "0.0575", "0.5", "0.123", "3.14", "12.3", "1235", "7", "0",
                   "-0.0421"], got
    rows = browser.execute_script(
        "return [...document.querySelectorAll('.overview tr[data-machine] [data-field=kwh_per_good_part]')]"
        ".map(e => [e.dataset.value, e.textContent])")
    small = [(float(v), t) for v, t in rows if v and 0 < float(v) < 1]
    assert small, rows
    for value, text in small:
        assert text == f"{float(f'{value:.3g}')!r} kWh", (value, text)


def test_kpi_tiles_name_their_period_and_the_machine_page_shows_good_parts(
        stack: Stack, browser: webdriver.Chrome) -> None:
    """The tiles say which shift and which start-end they cover, times with their UTC offset;
    the machine page has a good-parts tile (not applicable on the compressor)."""
    browser.get("about:blank")
    browser.get(f"{stack.url}/#/line/{LINE}")
    _wait(browser, ".overview .tiles [data-field=kpi-period][data-value*='/']")
    period = browser.execute_script(
        "const t = document.querySelector('.overview .tiles');"
        "const p = t.querySelector('[data-field=kpi-period]');"
        "return {window: t.dataset.kpiWindow, value: p.dataset.value, text: p.textContent,"
        "        visible: p.offsetHeight > 0}")
    assert period["value"] == period["window"] and period["visible"], period
    day, shift = period["window"].split("/")
    assert period["text"].startswith(f"Shift {shift} of {day}: "), period
    assert len(OFFSET.findall(period["text"])) == 2 and "(so far)" in period["text"], period
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        for asset in (FAULTY, COMPRESSOR):
            snap = _machine(browser, f"{stack.url}/#/machine/{asset}", asset)
            k = snap["kpi"]
            rep = client.get("/api/v1/kpis", params={"scope": k["kpiScope"], "from": k["kpiFrom"],
                                                     "to": k["kpiTo"], "group_by": "shift"}).json()
            window = rep["windows"][-1]
            assert window["window"] == snap["kpi"]["kpiWindow"] == snap["tiles"]["kpi-period"]["value"]
            rec = {m["machine"]: m for m in window["machines"]}[asset]
            tile = snap["tiles"]["good_count"]
            assert float(tile["value"]) == rec["good_count"], asset
            if rec["producing"]:
                assert (tile["text"], tile["na"]) == (str(rec["good_count"]), None)
            else:
                assert (tile["text"], tile["na"]) == ("–", "no-production")
