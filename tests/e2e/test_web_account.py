"""The account page and a file's preview page in real Chromium: the quota bar with its split,
a token created in the page that then works against the API and is revoked there; an image's
page shows its server-made thumbnail; a text file's page shows the text inside the
sandboxed frame; no console error anywhere (a CSP violation would be one)."""

from __future__ import annotations

import io

from tests.e2e.a11y import serious_violations
from tests.e2e.browser import (PHONE, browser, console_errors, shot, signed_in, wait_for,  # noqa: F401
                               web_server)


def test_account_page_quota_bar_and_token_creation(browser, web_server):  # noqa: F811
    from selenium.webdriver.common.by import By
    bob = web_server.user()
    assert bob.put(f"/api/v1/nodes/{bob.root}/children/a.bin", data=b"x" * 5000).status_code == 201
    signed_in(browser, web_server, bob.email)
    browser.get(web_server.url + "/account")
    bar = browser.find_element(By.CSS_SELECTOR, "svg.quota-bar")
    assert bar.size["width"] > 200 and "used" in bar.get_attribute("aria-label")
    legend = {li.get_attribute("data-part"): li.text for li in browser.find_elements(By.CSS_SELECTOR, ".legend li")}
    assert "5.0 KB" in legend["current"] and set(legend) == {"current", "old", "trash", "pending", "free"}
    browser.find_element(By.ID, "token_name").send_keys("webdav laptop")
    browser.find_element(By.ID, "token_password").send_keys("password123")
    browser.find_element(By.CSS_SELECTOR, "form[action$='/account/tokens'] button").click()
    secret = wait_for(browser, lambda d: d.find_elements(By.ID, "new-token"))[0].text
    assert secret.startswith("bd_")
    api = web_server.anon()
    assert api.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    shot(browser, "account")
    assert serious_violations(browser) == []
    row = browser.find_element(By.XPATH, "//tr[td[text()='webdav laptop']]")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(browser, lambda d: not d.find_elements(By.XPATH, "//tr[td[text()='webdav laptop']]"))
    assert api.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    browser.set_window_size(*PHONE)
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        shot(browser, "account-phone")
    finally:
        browser.set_window_size(1280, 900)
    assert console_errors(browser) == []


def test_previews_of_an_image_and_a_text_file(browser, web_server):  # noqa: F811
    from PIL import Image
    from selenium.webdriver.common.by import By
    bob = web_server.user()
    out = io.BytesIO()
    Image.new("RGB", (900, 600), "purple").save(out, "JPEG")
    img = bob.put(f"/api/v1/nodes/{bob.root}/children/photo.jpg", data=out.getvalue()).json()["id"]
    txt = bob.put(f"/api/v1/nodes/{bob.root}/children/notes.md",
                  data="# hello <script>alert(1)</script> from the frame\n".encode()).json()["id"]
    signed_in(browser, web_server, bob.email)
    browser.get(f"{web_server.url}/preview/{img}")
    thumb = browser.find_element(By.CSS_SELECTOR, "img.thumb")
    wait_for(browser, lambda d: d.execute_script("return arguments[0].complete", thumb))
    assert browser.execute_script("return arguments[0].naturalWidth", thumb) == 256
    assert browser.find_element(By.LINK_TEXT, "Download").get_attribute("href").endswith(f"/download/{img}")
    shot(browser, "preview-image")
    assert serious_violations(browser) == []
    browser.get(f"{web_server.url}/preview/{txt}")
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.text-frame")
    assert frame.get_attribute("sandbox") == ""
    browser.switch_to.frame(frame)
    try:
        text = wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").text)
        assert "# hello <script>alert(1)</script> from the frame" in text
    finally:
        browser.switch_to.default_content()
    browser.set_window_size(*PHONE)
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        shot(browser, "preview-text-phone")
        assert serious_violations(browser) == []
    finally:
        browser.set_window_size(1280, 900)
    assert console_errors(browser) == []
