"""Every main page of the web app in real Chromium, at a desktop's and a phone's width: axe-core
finds no serious or critical accessibility issue, the console shows no error (a CSP violation
would be one), nothing is wider than the phone's screen, and no page weighs more than 200 KB
before the files it lists."""

from __future__ import annotations

import pytest

from harness.webtour import seed, stops
from tests.e2e.a11y import serious_violations
from tests.e2e.browser import DESKTOP, PHONE, console_errors, make_driver, page_weight, shot, signed_in, web_server  # noqa: F401,E501

MAX_PAGE_BYTES = 200_000


@pytest.fixture(scope="module")
def tour(web_server):  # noqa: F811
    return seed(web_server)


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_main_pages_are_accessible_light_and_fit_a_phone(web_server, tour, size):  # noqa: F811
    driver = make_driver(*size)
    problems = []
    try:
        who = object()
        for stop in stops(tour):
            if stop.who != who:
                if stop.who is None:
                    driver.get(web_server.url + "/")
                    driver.delete_all_cookies()
                else:
                    signed_in(driver, web_server, stop.who)
                who = stop.who
            console_errors(driver)  # what signing in logged is not this page's
            driver.get(web_server.url + stop.path)
            shot(driver, f"{stop.name}-{'desktop' if size == DESKTOP else 'phone'}")
            problems += [f"{stop.name}: {v}" for v in serious_violations(driver)]
            problems += [f"{stop.name}: console: {e}" for e in console_errors(driver)]
            weight = page_weight(driver)
            if weight > MAX_PAGE_BYTES:
                problems.append(f"{stop.name}: {weight} bytes over the wire")
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            if overflow > 0:
                problems.append(f"{stop.name}: {overflow} px wider than the window")
    finally:
        driver.quit()
    assert problems == []
