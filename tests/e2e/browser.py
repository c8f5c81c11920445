"""Real Chromium driven by Selenium (Debian's ``chromium`` and ``chromium-driver``, Selenium
from PyPI) for the web app's browser tests; shared by every ``tests/e2e/test_web_*.py``.

``browser`` is one headless Chromium per test module; ``web_server`` a real server (SQLite)
per module. ``signed_in(driver, server, email)`` signs in through the form the way a person
does. Screenshots go to ``var/artifacts/web/`` (``shot``); ``docs/screens/`` is written by
``tools/screenshots.py`` from the same pages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import require_tool, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts" / "web"
PASSWORD = "password123"  # what harness.server.Server.user gives every user
DESKTOP, PHONE = (1280, 900), (390, 844)


def make_driver(width: int = DESKTOP[0], height: int = DESKTOP[1]):
    """A headless Chromium under chromedriver, downloads going to a temporary folder
    (``driver.download_dir``)."""
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary = require_tool(("chromium", "chromium-browser"), "Debian: apt-get install -y chromium")
    chromedriver = require_tool(("chromedriver",), "Debian: apt-get install -y chromium-driver")
    downloads = tempfile.mkdtemp(prefix="bd-downloads-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
    driver.set_page_load_timeout(60)
    driver.download_dir = downloads
    return driver


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
    """Sign in through the form at ``/`` (any earlier session is signed out first)."""
    from selenium.webdriver.common.by import By
    driver.delete_all_cookies()
    driver.get(server.url + "/")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "header.top"))
    return driver


def wait_for(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(condition)


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (a CSP violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


__all__ = ["browser", "web_server", "signed_in", "wait_for", "console_errors", "shot", "make_driver", "PASSWORD",
           "DESKTOP", "PHONE", "os"]
