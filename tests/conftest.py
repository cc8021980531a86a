"""Fixtures shared by every test suite: real servers, started and stopped by the tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from tests.support.browser import headless_chromium
from tests.support.servers import InfluxDB, Mosquitto
from tests.support.webhook import WebhookReceiver, webhook_receiver


def _xdist_group(item: pytest.Item) -> str:
    """The unit a worker runs whole: one test module (its module-scoped fixtures are built once);
    tests/dashboards together (they share the session-scoped filled ``stack``)."""
    rel = item.path.relative_to(Path(__file__).parent)
    return "dashboards" if rel.parts[0] == "dashboards" else rel.as_posix()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks (--dist loadgroup)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups per :func:`_xdist_group`; refuses a run whose node ids repeat: pytest-xdist runs ONE
    of the items sharing a node id and reports the others nowhere (schemathesis' ``parametrize``
    did this: 12 of its 13 operations never ran in CI)."""
    counts = Counter(i.nodeid for i in items)
    repeated = sorted(nodeid for nodeid, n in counts.items() if n > 1)
    if repeated:
        raise pytest.UsageError(f"tests with the same node id (only one would run under xdist): {repeated}")
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto broker (anonymous, persistent) for one test."""
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """A fresh InfluxDB 1.x server with database ``zhizao`` for one test."""
    server = InfluxDB(tmp_path / "influxdb")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A real HTTP webhook receiver (``.url``, ``.received``) for one test."""
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """``../shared`` beside the checkout (datasets, design docs)."""
    return Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session's UI tests (screenshots go to ``artifacts/``)."""
    with headless_chromium() as driver:
        yield driver
