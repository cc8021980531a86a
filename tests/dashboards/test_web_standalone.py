"""The web dashboard on small DuckDB-backed ingests: one that requires tokens (without one the page
says what to do; opened once with ``?token=`` it works and remembers it), one without the KPI router."""

from __future__ import annotations

from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dashboards.web import web_router
from ingest.app import create_app
from ingest.auth import Scope
from ingest.testing import create_token, server_settings
from simulator.engine import generate
from simulator.plant_export import plant_config
from tests.dashboards.conftest import build_app, serve
from tests.dashboards.fill import now_s, post_samples, scenario

MINUTES = 3


def _status(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.ID, "status").text


def test_page_asks_for_a_token_then_remembers_it(tmp_path: Path, browser: webdriver.Chrome) -> None:
    settings = server_settings(tmp_path, auth=True)
    writer = create_token(settings, "sim", Scope.WRITE)
    reader = create_token(settings, "screen", Scope.READ)
    sc = scenario(now_s(), MINUTES)
    with serve(build_app(settings, plant_config(sc))) as url:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {writer}"}) as client:
            post_samples(client, list(generate(sc, 7, MINUTES * 60)), "sim")
        browser.get(f"{url}/")
        WebDriverWait(browser, 20).until(lambda d: "token" in _status(d))
        assert "?token=" in _status(browser)
        assert browser.find_element(By.CSS_SELECTOR, ".status").get_attribute("class") == "status error"

        browser.get(f"{url}/?token=wrong#/line/plant1/a1/line2")
        WebDriverWait(browser, 20).until(lambda d: "refused the saved token" in _status(d))
        assert browser.execute_script("return localStorage.getItem('zhizao.token')") is None  # forgotten

        browser.get(f"{url}/?token={reader}#/line/plant1/a1/line2")
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-machine]"))
        assert "live" in _status(browser)
        # out of the address bar (history, bookmarks, screenshots) at once; the view is kept
        assert browser.current_url == f"{url}/#/line/plant1/a1/line2"
        browser.get(f"{url}/#/line/plant1/a1/line1")  # no token in the URL any more: remembered
        WebDriverWait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-machine^='plant1/a1/line1/']"))
        assert "live" in _status(browser)


def test_the_page_allows_only_its_own_scripts_and_sends_no_referer(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    """The page keeps a read token in localStorage: a strict CSP, and the page renders under it."""
    settings = server_settings(tmp_path)
    sc = scenario(now_s(), MINUTES)
    with serve(build_app(settings, plant_config(sc))) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            post_samples(client, list(generate(sc, 7, MINUTES * 60)), "sim")
            headers = client.get("/").headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert headers["referrer-policy"] == "no-referrer" and headers["x-content-type-options"] == "nosniff"
        browser.get(f"{url}/#/machine/plant1/a1/line1/cnc-1")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".legend i"))
        assert "live" in _status(browser)
        logs = browser.get_log("browser")  # type: ignore[no-untyped-call]
        violations = [e["message"] for e in logs if "Content Security Policy" in e["message"]]
        assert not violations, violations


def test_without_the_kpi_router_the_rest_still_works(tmp_path: Path, browser: webdriver.Chrome) -> None:
    settings = server_settings(tmp_path)
    sc = scenario(now_s(), MINUTES)
    app = create_app(settings)
    app.include_router(web_router())
    with serve(app) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            post_samples(client, list(generate(sc, 7, MINUTES * 60)), "sim")
        browser.get(f"{url}/#/line/plant1/a1/line1")
        WebDriverWait(browser, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-field=kpi-missing]"))
        states = browser.execute_script(  # one read: the page re-renders on every poll
            "return [...document.querySelectorAll('tr[data-machine] [data-field=state]')]"
            ".map(e => e.dataset.value)")
        assert len(states) == 5 and "live" in _status(browser)
        assert set(states) <= {"running", "idle", "setup", "down", "off"}
