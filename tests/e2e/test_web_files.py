"""The files pages in real Chromium: uploads (picker, folder picker, drag-and-drop, one
interrupted and resumed over tus), folder navigation, rename, move, delete, restore and a
version restore; each checked through the API afterwards, and no console error on the way."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import pytest
import requests

from tests.e2e.browser import (PHONE, browser, console_errors, make_driver, shot, signed_in,  # noqa: F401
                               wait_for, web_server)
from tests.e2e.conftest import start_server, stop_server


def by():
    from selenium.webdriver.common.by import By
    return By


def content(client, parent: int, name: str) -> bytes | None:
    """The bytes of ``name`` in folder ``parent`` (through the API), or None."""
    items = client.get(f"/api/v1/nodes/{parent}/children?limit=1000").json()["items"]
    hit = [n for n in items if n["name"] == name]
    return client.get(f"/api/v1/nodes/{hit[0]['id']}/content").content if hit else None


def child(client, parent: int, name: str) -> dict | None:
    items = client.get(f"/api/v1/nodes/{parent}/children?limit=1000").json()["items"]
    return next((n for n in items if n["name"] == name), None)


def listed(driver) -> list[str]:
    """The names in the listing on screen (read in one script: the page may be reloading)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table.listing td.name a'), a => a.textContent.trim())")


def open_folder(driver, server, folder_id: int):
    driver.get(f"{server.url}/f/{folder_id}")
    wait_for(driver, lambda d: d.find_elements(by().CSS_SELECTOR, "table.listing"))


def test_upload_by_picker_and_folder_picker(browser, web_server, tmp_path):  # noqa: F811
    u = web_server.user()
    a, b = tmp_path / "a <b>.txt", tmp_path / "b.bin"
    a.write_bytes(b"alpha\n")
    b.write_bytes(os.urandom(300_000))
    signed_in(browser, web_server, u.email)
    browser.find_element(by().ID, "pick-files").send_keys(f"{a}\n{b}")
    wait_for(browser, lambda d: {"a <b>.txt", "b.bin"} <= set(listed(d)))
    assert content(u, u.root, "a <b>.txt") == b"alpha\n"
    assert content(u, u.root, "b.bin") == b.read_bytes()
    tree = tmp_path / "album"
    (tree / "inner").mkdir(parents=True)
    (tree / "one.txt").write_bytes(b"one")
    (tree / "inner" / "two.txt").write_bytes(b"two")
    browser.find_element(by().ID, "pick-folder").send_keys(str(tree))
    wait_for(browser, lambda d: "album/" in listed(d))
    album = child(u, u.root, "album")
    assert album and album["kind"] == "folder"
    assert content(u, album["id"], "one.txt") == b"one"
    assert content(u, child(u, album["id"], "inner")["id"], "two.txt") == b"two"
    assert browser.execute_script("return localStorage.getItem('blockdrive.upload-queue')") == "[]"
    shot(browser, "files-after-upload")
    assert console_errors(browser) == []


DROP = """
const [name, text] = arguments;
const dt = new DataTransfer();
dt.items.add(new File([text], name, {type: 'text/plain'}));
const zone = document.getElementById('drop-zone');
for (const type of ['dragenter', 'dragover', 'drop']) {
  zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
}
"""


def test_upload_by_drag_and_drop(browser, web_server):  # noqa: F811
    u = web_server.user()
    folder = u.mkdir(u.root, "dropped here")
    signed_in(browser, web_server, u.email)
    open_folder(browser, web_server, folder["id"])
    browser.execute_script(DROP, "dropped.txt", "made in the page")
    wait_for(browser, lambda d: "dropped.txt" in listed(d))
    assert content(u, folder["id"], "dropped.txt") == b"made in the page"
    assert content(u, u.root, "dropped.txt") is None  # into the folder shown, nowhere else
    assert console_errors(browser) == []


def tus_urls(driver) -> list[str]:
    """The upload URLs tus-js-client keeps in localStorage for resuming."""
    raw = driver.execute_script(
        "return Object.keys(localStorage).filter(k => k.startsWith('tus::')).map(k => localStorage.getItem(k))")
    return [json.loads(v)["uploadUrl"] for v in raw]


def test_upload_interrupted_by_a_reload_resumes_when_the_file_is_added_again(browser, web_server, tmp_path):  # noqa: F811
    u = web_server.user()
    big = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024)
    big.write_bytes(data)
    signed_in(browser, web_server, u.email)
    # small chunks on a slow link, so the upload is surely caught half-way
    browser.execute_script("document.getElementById('upload').dataset.chunkSize = String(64 * 1024)")
    browser.set_network_conditions(offline=False, latency=150, download_throughput=-1, upload_throughput=-1)
    try:
        browser.find_element(by().ID, "pick-files").send_keys(str(big))
        wait_for(browser, lambda d: d.execute_script(
            "const p = document.querySelector('#upload-queue progress'); return p && p.value >= 10"))
        browser.find_element(by().CSS_SELECTOR, "#upload-queue .q-pause").click()
        wait_for(browser, lambda d: d.find_element(by().CSS_SELECTOR, "#upload-queue li").get_attribute(
            "data-state") == "paused")
    finally:
        browser.delete_network_conditions()
    browser.refresh()
    row = wait_for(browser, lambda d: d.find_elements(by().CSS_SELECTOR, "#upload-queue li"))[0]
    assert "big.bin" in row.text and "add the file again" in row.text
    (url,) = tus_urls(browser)
    r = u.request("HEAD", url.replace(web_server.url, ""), headers={"Tus-Resumable": "1.0.0"})
    offset = int(r.headers["Upload-Offset"])
    assert 0 < offset < len(data)
    assert content(u, u.root, "big.bin") is None
    browser.find_element(by().ID, "pick-files").send_keys(str(big))
    wait_for(browser, lambda d: "big.bin" in listed(d), timeout=60)
    got = content(u, u.root, "big.bin")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    # the same tus upload went on from where it stopped (a new one would have left it half-way)
    r = u.request("HEAD", url.replace(web_server.url, ""), headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 404 or int(r.headers["Upload-Offset"]) == len(data)
    assert tus_urls(browser) == []
    assert browser.find_elements(by().CSS_SELECTOR, "#upload-queue li") == []
    assert console_errors(browser) == []


def test_folder_navigation_rename_move_delete_and_restore(browser, web_server):  # noqa: F811
    B = by()
    u = web_server.user()
    docs = u.mkdir(u.root, "docs")
    archive = u.mkdir(u.root, "archive")
    u.upload(docs["id"], "draft.txt", b"draft")
    signed_in(browser, web_server, u.email)
    browser.find_element(B.LINK_TEXT, "docs/").click()
    wait_for(browser, lambda d: "draft.txt" in listed(d))
    assert [li.text for li in browser.find_elements(B.CSS_SELECTOR, ".crumbs li")] == ["My files", "docs"]
    # rename
    row = browser.find_element(B.CSS_SELECTOR, "tr[data-kind=file]")
    row.find_element(B.TAG_NAME, "summary").click()
    field = row.find_element(B.NAME, "name")
    field.clear()
    field.send_keys("final.txt")
    row.find_element(B.CSS_SELECTOR, "details button[type=submit]").click()
    wait_for(browser, lambda d: "final.txt" in listed(d))
    assert content(u, docs["id"], "final.txt") == b"draft"
    # move through the folder picker
    browser.find_element(B.CSS_SELECTOR, "tr[data-kind=file] input[name=ids]").click()
    browser.find_element(B.CSS_SELECTOR, "#selection button[value=move]").click()
    wait_for(browser, lambda d: d.find_elements(B.ID, "move-here"))
    browser.find_element(B.CSS_SELECTOR, ".crumbs a").click()  # up to My files
    wait_for(browser, lambda d: d.find_elements(B.LINK_TEXT, "archive/"))
    browser.find_element(B.LINK_TEXT, "archive/").click()
    wait_for(browser, lambda d: "archive" in d.find_element(B.ID, "move-here").text)
    browser.find_element(B.ID, "move-here").click()
    wait_for(browser, lambda d: "final.txt" in listed(d))
    assert content(u, archive["id"], "final.txt") == b"draft" and content(u, docs["id"], "final.txt") is None
    # the folder's zip, streamed by the real server to the browser's session
    zip_link = browser.find_element(B.LINK_TEXT, "Download as zip").get_attribute("href")
    session = requests.Session()
    for cookie in browser.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    r = session.get(zip_link, timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == ["final.txt"] and zf.read("final.txt") == b"draft"
    # delete, then restore from the trash
    browser.find_element(B.CSS_SELECTOR, "tr[data-kind=file] .actions button.danger").click()
    wait_for(browser, lambda d: "final.txt" not in listed(d))
    assert child(u, archive["id"], "final.txt") is None
    browser.find_element(B.LINK_TEXT, "Trash").click()
    wait_for(browser, lambda d: d.find_elements(B.CSS_SELECTOR, "table.trash tr[data-id]"))
    shot(browser, "files-trash")
    browser.find_element(B.CSS_SELECTOR, "table.trash tr[data-id] button").click()
    wait_for(browser, lambda d: "final.txt" in listed(d))
    assert content(u, archive["id"], "final.txt") == b"draft"
    assert u.get("/api/v1/trash").json()["items"] == []
    assert console_errors(browser) == []


def test_version_restore(browser, web_server):  # noqa: F811
    B = by()
    u = web_server.user()
    u.upload(u.root, "notes.txt", b"version one")
    u.upload(u.root, "notes.txt", b"version two")
    signed_in(browser, web_server, u.email)
    browser.find_element(B.CSS_SELECTOR, "a[aria-label='Versions of notes.txt']").click()
    wait_for(browser, lambda d: d.find_elements(B.CSS_SELECTOR, "table.versions tr[data-version]"))
    shot(browser, "files-versions")
    browser.find_element(B.CSS_SELECTOR, "table.versions form button").click()
    wait_for(browser, lambda d: len(d.find_elements(B.CSS_SELECTOR, "table.versions tr[data-version]")) == 3)
    assert content(u, u.root, "notes.txt") == b"version one"
    assert console_errors(browser) == []


@pytest.fixture(scope="module")
def small_quota_server(tmp_path_factory):
    """A server whose free plan holds 100 kB."""
    proc, srv = start_server(tmp_path_factory.mktemp("web-quota"), None, extra_env={"BLOCKDRIVE_QUOTA_FREE_BYTES": "100000"})
    try:
        yield srv
    finally:
        stop_server(proc)


def test_over_quota_upload_shows_the_servers_message_and_charges_nothing(browser, small_quota_server, tmp_path):  # noqa: F811
    B = by()
    u = small_quota_server.user()
    used = u.get("/api/v1/account").json()
    big = tmp_path / "too big.bin"
    big.write_bytes(os.urandom(150_000))
    signed_in(browser, small_quota_server, u.email)
    browser.find_element(B.ID, "pick-files").send_keys(str(big))
    row = wait_for(browser, lambda d: d.find_elements(B.CSS_SELECTOR, "#upload-queue li[data-state=failed]"))[0]
    assert "quota" in row.text.lower()
    assert all("413" in e for e in console_errors(browser))  # the refused request itself, nothing else
    assert u.get("/api/v1/account").json() == used and child(u, u.root, "too big.bin") is None
    assert browser.execute_script("return localStorage.getItem('blockdrive.upload-queue')") == "[]"


def test_a_signed_out_upload_says_so_and_keeps_the_queue(browser, web_server, tmp_path):  # noqa: F811
    B = by()
    u = web_server.user()
    f = tmp_path / "later.txt"
    f.write_bytes(b"later")
    signed_in(browser, web_server, u.email)
    browser.delete_all_cookies()  # the session ends while the page is open
    browser.find_element(B.ID, "pick-files").send_keys(str(f))
    note = wait_for(browser, lambda d: [e for e in d.find_elements(B.ID, "upload-signed-out") if e.is_displayed()])[0]
    assert "Signed out" in note.text and "your queue is kept" in note.text
    link = note.find_element(B.TAG_NAME, "a").get_attribute("href")
    assert link.startswith(web_server.url + "/?next=")
    queue = json.loads(browser.execute_script("return localStorage.getItem('blockdrive.upload-queue')"))
    assert [e["name"] for e in queue] == ["later.txt"]
    assert all("401" in e for e in console_errors(browser))
    signed_in(browser, web_server, u.email)
    row = wait_for(browser, lambda d: d.find_elements(B.CSS_SELECTOR, "#upload-queue li"))[0]
    assert "later.txt" in row.text and "add the file again" in row.text
    browser.find_element(B.ID, "pick-files").send_keys(str(f))
    wait_for(browser, lambda d: "later.txt" in listed(d))
    assert content(u, u.root, "later.txt") == b"later"


def test_the_folder_page_fits_a_phone(web_server):  # noqa: F811
    B = by()
    u = web_server.user()
    u.mkdir(u.root, "a folder with a rather long name that has to wrap somewhere")
    u.upload(u.root, "photo-2026-12-06-holiday.jpg", b"not really a jpeg")
    phone = make_driver(*PHONE)
    try:
        # a headless window is never narrower than 500 px: the phone's viewport is emulated
        phone.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                              {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True})
        signed_in(phone, web_server, u.email)
        wait_for(phone, lambda d: d.find_elements(B.CSS_SELECTOR, "table.listing tr[data-id]"))
        shot(phone, "files-phone")
        assert phone.execute_script("return window.innerWidth") == PHONE[0]
        assert phone.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        assert console_errors(phone) == []
    finally:
        phone.quit()
