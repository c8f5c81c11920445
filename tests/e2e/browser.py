"""Real Chromium driven by Selenium for the web app's browser tests; shared by every
``tests/e2e/test_web_*.py``. The driver itself is ``harness.browser`` (shared with
``tools/screenshots.py``); here are the fixtures: ``browser``, one headless Chromium per test
module (the test fails in CI without Chromium or its driver, and skips elsewhere), and
``web_server``, a real server (SQLite) per module. Screenshots go to ``var/artifacts/web/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.browser import DESKTOP, PASSWORD, PHONE, console_errors, page_weight, wait_for
from harness.browser import make_driver as _make_driver
from harness.browser import signed_in as _signed_in
from tests.e2e.conftest import require_tool, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts" / "web"

__all__ = ["browser", "web_server", "signed_in", "wait_for", "console_errors", "page_weight", "shot",
           "make_driver", "PASSWORD", "DESKTOP", "PHONE"]


def make_driver(width: int = DESKTOP[0], height: int = DESKTOP[1]):
    binary = require_tool(("chromium", "chromium-browser"), "Debian: apt-get install -y chromium")
    chromedriver = require_tool(("chromedriver",), "Debian: apt-get install -y chromium-driver")
    return _make_driver(width, height, binary, chromedriver)


@pytest.fixture(scope="module")
def browser():
    driver = make_driver()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    proc, srv = start_server(tmp_path_factory.mktemp("web"), None)
    try:
        yield srv
    finally:
        stop_server(proc)


def signed_in(driver, server, email: str, password: str = PASSWORD):
    """Sign in to ``server`` through the form at ``/``."""
    return _signed_in(driver, server.url, email, password)


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
