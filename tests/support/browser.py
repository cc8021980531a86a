"""Headless Chromium (Debian ``chromium`` + ``chromium-driver``) driven by selenium, for UI tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
"""Where UI tests save screenshots (gitignored; CI keeps it as an artifact)."""

# No background traffic: this machine's network is closed, and Chromium would retry forever.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1400,1100")


@contextmanager
def headless_chromium() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with its own temporary profile, quit and removed on exit."""
    profile = tempfile.mkdtemp(prefix="zhizao-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
