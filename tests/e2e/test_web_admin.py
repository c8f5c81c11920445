"""Admin user management in real Chromium: an admin signs in at ``/``, follows Admin → Users,
creates a user and changes their quota through the forms; each step is checked through the
admin API. The pages carry no script, so the console stays empty (a CSP violation would show)."""

from __future__ import annotations

from harness.server import Client
from tests.e2e.browser import (PHONE, browser, console_errors, shot, signed_in, wait_for,  # noqa: F401
                               web_server)


def test_admin_creates_a_user_and_changes_their_quota(browser, web_server):  # noqa: F811
    from selenium.webdriver.common.by import By
    token = web_server.cli("user", "create", "chief@example.com", "--password", "password123",
                           "--admin").strip().splitlines()[-1]
    api = Client(web_server.url, token)
    signed_in(browser, web_server, "chief@example.com")
    browser.find_element(By.LINK_TEXT, "Admin").click()
    wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "Users"))
    browser.find_element(By.LINK_TEXT, "Users").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "create-user"))

    email = "<b>new</b>@example.com"  # markup in an address: shown as text
    browser.find_element(By.ID, "new-email").send_keys("newcomer@example.com")
    browser.find_element(By.ID, "new-password").send_keys("newcomer-pass")
    browser.find_element(By.ID, "new-quota").send_keys("3G")
    browser.find_element(By.CSS_SELECTOR, "#create-user button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "user-email"))
    assert browser.find_element(By.ID, "user-email").text == "newcomer@example.com"
    found = api.get("/api/v1/admin/users", params={"q": "newcomer"}).json()["items"]
    assert [(u["email"], u["quota_bytes"]) for u in found] == [("newcomer@example.com", 3 * 10**9)]
    uid = found[0]["id"]

    quota = browser.find_element(By.ID, "quota")
    quota.send_keys("750M")
    browser.find_element(By.CSS_SELECTOR, "#set-quota button[type=submit]").click()
    wait_for(browser, lambda d: "750000000 B" in d.find_element(By.ID, "user-quota").text)
    assert api.get(f"/api/v1/admin/users/{uid}").json()["quota_bytes"] == 750 * 10**6
    shot(browser, "admin-user")

    api.post("/api/v1/admin/users", json={"email": email, "password": "password-xyz"})
    browser.get(web_server.url + "/admin/users?q=example")
    cells = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#users a")]
    assert email in cells and not browser.find_elements(By.CSS_SELECTOR, "#users b")
    browser.set_window_size(*PHONE)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    shot(browser, "admin-users-phone")
    assert width <= PHONE[0] + 1  # no sideways scrolling on a phone
    assert console_errors(browser) == []
