"""Sharing in real Chromium: a folder shared through the share page shows up under "Shared
with me"; a password link made on the share page is opened anonymously and its file
downloaded; files sent through a file-drop page arrive in the owner's folder. Each is
checked through the API afterwards, and no page logs a console error."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tests.e2e.browser import browser, console_errors, shot, signed_in, wait_for, web_server  # noqa: F401


def _by():
    from selenium.webdriver.common.by import By
    return By


def test_share_with_another_user_who_sees_it(browser, web_server):  # noqa: F811
    By = _by()
    ann, bob = web_server.user(), web_server.user()
    folder = ann.mkdir(ann.root, "<team> plans")
    signed_in(browser, web_server, ann.email)
    browser.get(f"{web_server.url}/share/{folder['id']}")
    browser.find_element(By.ID, "grant-email").send_keys(bob.email)
    browser.find_element(By.CSS_SELECTOR, "#grant-role option[value=editor]").click()
    browser.find_element(By.CSS_SELECTOR, "#grant-form button[type=submit]").click()
    wait_for(browser, lambda d: bob.email in d.find_element(By.CSS_SELECTOR, "ul.people").text)
    shot(browser, "share-page")
    assert console_errors(browser) == []
    shares = ann.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"]
    assert [(s["email"], s["role"]) for s in shares] == [(bob.email, "editor")]

    signed_in(browser, web_server, bob.email)
    browser.get(f"{web_server.url}/shared")
    link = browser.find_element(By.CSS_SELECTOR, "#shared-list tbody a")
    assert link.text == "<team> plans/"  # the name as text
    shot(browser, "shared-with-me")
    link.click()
    wait_for(browser, lambda d: d.current_url.endswith(f"/f/{folder['id']}"))
    assert console_errors(browser) == []
    mine = bob.get("/api/v1/shared-with-me").json()["items"]
    assert [n["id"] for n in mine] == [folder["id"]]
    assert bob.mkdir(folder["id"], "from bob")["name"] == "from bob"  # an editor's right


def _wait_for_download(folder: str, name: str, timeout: float = 30) -> bytes:
    path = Path(folder) / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not any(p.suffix == ".crdownload" for p in Path(folder).iterdir()):
            return path.read_bytes()
        time.sleep(0.2)
    raise AssertionError(f"{name} was not downloaded; the folder holds {os.listdir(folder)}")


def test_a_password_link_opened_anonymously_downloads_the_file(browser, web_server):  # noqa: F811
    By = _by()
    ann = web_server.user()
    data = os.urandom(3000)
    f = ann.upload(ann.root, "report.bin", data).json()
    signed_in(browser, web_server, ann.email)
    browser.get(f"{web_server.url}/share/{f['id']}")
    browser.find_element(By.ID, "link-days").send_keys("3")
    browser.find_element(By.ID, "link-password").send_keys("tulip-42")
    browser.find_element(By.CSS_SELECTOR, "#link-form button[type=submit]").click()
    url = wait_for(browser, lambda d: d.find_elements(By.ID, "new-link-url"))[0].get_attribute("value")
    assert "/s/bl_" in url
    browser.find_element(By.CSS_SELECTOR, "[data-copy]").click()  # clipboard, or the selected fallback
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-copy-status]").text)
    assert console_errors(browser) == []
    links = ann.get(f"/api/v1/nodes/{f['id']}/links").json()["items"]
    assert [(li["role"], li["has_password"], li["expires_at"] is not None) for li in links] == [("viewer", True, True)]

    browser.delete_all_cookies()  # a stranger's browser from here on
    browser.get(url)
    assert not browser.find_elements(By.CSS_SELECTOR, "header.top")
    browser.find_element(By.ID, "link-password").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "#link-password-form button").click()
    assert "Wrong password" in wait_for(browser, lambda d: d.find_elements(By.ID, "link-error"))[0].text
    console_errors(browser)  # the refused post (401) is logged; nothing else may be
    browser.find_element(By.ID, "link-password").send_keys("tulip-42")
    browser.find_element(By.CSS_SELECTOR, "#link-password-form button").click()
    assert wait_for(browser, lambda d: d.find_elements(By.ID, "link-name"))[0].text == "report.bin"
    shot(browser, "link-file")
    assert "tulip-42" not in browser.current_url
    browser.find_element(By.ID, "link-download").click()
    assert _wait_for_download(browser.download_dir, "report.bin") == data
    assert console_errors(browser) == []
    assert ann.get(f"/api/v1/nodes/{f['id']}/links").json()["items"][0]["downloads"] == 1


def test_a_file_drop_upload_arrives_in_the_owners_folder(browser, web_server):  # noqa: F811
    By = _by()
    ann = web_server.user()
    box = ann.mkdir(ann.root, "inbox")
    assert ann.upload(box["id"], "private-plan.txt", b"owner only").status_code == 201
    r = ann.post(f"/api/v1/nodes/{box['id']}/links", json={"role": "uploader"})
    assert r.status_code == 201, r.text
    browser.delete_all_cookies()
    browser.get(r.json()["url"])
    assert "private-plan" not in browser.page_source
    tmp = Path(tempfile.mkdtemp(prefix="bd-drop-"))
    (tmp / "photo.jpg").write_bytes(b"\xff\xd8jpeg bytes")
    (tmp / "private-plan.txt").write_bytes(b"from a stranger")
    browser.find_element(By.ID, "drop-files").send_keys(f"{tmp / 'photo.jpg'}\n{tmp / 'private-plan.txt'}")
    browser.find_element(By.CSS_SELECTOR, "#drop-form button[type=submit]").click()
    received = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#received .received-name"))
    assert sorted(e.text for e in received) == ["photo.jpg", "private-plan.txt"]
    assert "private-plan (2)" not in browser.page_source  # the stored name is not told
    shot(browser, "link-drop")
    assert console_errors(browser) == []
    items = {n["name"]: n for n in ann.get(f"/api/v1/nodes/{box['id']}/children").json()["items"]}
    assert set(items) == {"photo.jpg", "private-plan.txt", "private-plan (2).txt"}
    got = ann.get(f"/api/v1/nodes/{items['private-plan (2).txt']['id']}/content").content
    assert got == b"from a stranger"
    assert ann.get(f"/api/v1/nodes/{items['private-plan.txt']['id']}/content").content == b"owner only"
