"""Sign-in in real Chromium: the form, a wrong password, the root folder with a hostile name
shown as text, no console error (a CSP violation would be one), and sign-out."""

from __future__ import annotations

from tests.e2e.browser import browser, console_errors, shot, signed_in, wait_for, web_server  # noqa: F401


def test_sign_in_shows_the_root_folder_and_sign_out_ends_it(browser, web_server):  # noqa: F811
    from selenium.webdriver.common.by import By
    bob = web_server.user()
    name = "<img src=x onerror=alert(1)>.exe"
    r = bob.put(f"/api/v1/nodes/{bob.root}/children/{name}", data=b"hi")
    assert r.status_code == 201, r.text
    browser.get(web_server.url + "/")
    browser.find_element(By.NAME, "email").send_keys(bob.email)
    browser.find_element(By.NAME, "password").send_keys("wrong-password")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    error = wait_for(browser, lambda d: d.find_elements(By.ID, "signin-error"))[0]  # the form's answer
    assert "Wrong email or password" in error.text
    assert all("401" in e for e in console_errors(browser))  # the refused form post itself, nothing else
    signed_in(browser, web_server, bob.email)
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "table.listing td")]
    assert any(name in c for c in cells)  # the name as text, never as markup
    assert not browser.find_elements(By.CSS_SELECTOR, "table.listing img")
    shot(browser, "signin-root")
    assert console_errors(browser) == []
    browser.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(browser, lambda d: d.find_elements(By.NAME, "password"))
    browser.get(web_server.url + "/")
    assert browser.find_elements(By.NAME, "password")
