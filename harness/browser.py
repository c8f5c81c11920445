"""Headless Chromium under Selenium (Debian's ``chromium`` and ``chromium-driver``), for the web
app's browser tests and ``tools/screenshots.py``: start one, sign in through the form, wait,
read the console. Finding the binaries is the caller's business (tests fail in CI without them)."""

from __future__ import annotations

import shutil
import tempfile

PASSWORD = "password123"  # what harness.server.Server.user gives every user
DESKTOP, PHONE = (1280, 900), (390, 844)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")


def make_driver(width: int = DESKTOP[0], height: int = DESKTOP[1], binary: str | None = None,
                chromedriver: str | None = None):
    """A headless Chromium; downloads go to ``driver.download_dir`` (a new temporary folder)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    binary = binary or shutil.which("chromium") or "chromium"
    chromedriver = chromedriver or shutil.which("chromedriver") or "chromedriver"
    downloads = tempfile.mkdtemp(prefix="bd-downloads-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    if width < 500:  # a phone: headless windows are never narrower than 500 px, so emulate the screen
        opts.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height,
                                                                           "pixelRatio": 1}})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=opts)
    driver.set_page_load_timeout(60)
    driver.download_dir = downloads  # type: ignore[attr-defined]  # where this driver saves downloads
    return driver


def wait_for(driver, condition, timeout: float = 20):
    """Wait until ``condition(driver)`` is truthy. An element read from the page being left
    (stale) or not there yet counts as "not yet", so a condition may read the next page's
    elements while a form's answer is still loading."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition)


def signed_in(driver, base_url: str, email: str, password: str = PASSWORD):
    """Sign in through the form at ``/`` (any earlier session is forgotten first)."""
    from selenium.webdriver.common.by import By
    driver.get(base_url + "/")
    driver.delete_all_cookies()
    driver.get(base_url + "/")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "header.top"))
    return driver


def console_errors(driver) -> list[str]:
    """The browser console's errors since the last call (a CSP violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def page_weight(driver) -> int:
    """Bytes the page took over the wire: the document and every resource it loaded."""
    return int(driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "const r = performance.getEntriesByType('resource');"
        "return (n ? n.encodedBodySize : 0) + r.reduce((a, e) => a + e.encodedBodySize, 0);"))
