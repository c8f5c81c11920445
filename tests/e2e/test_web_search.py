"""Search in real Chromium: from the header's Search link, a word of an uploaded file's name
finds it (and what is shared with the user), each result leading to its folder; the page
fits a phone's width with no console error; the JSON API answers the same."""

from __future__ import annotations

from tests.e2e.browser import PHONE, browser, console_errors, shot, signed_in, wait_for, web_server  # noqa: F401


def test_search_from_the_page_finds_an_uploaded_file_and_what_is_shared(browser, web_server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    ann, bob = web_server.user(), web_server.user()
    folder = bob.mkdir(bob.root, "Taxes")
    r = bob.upload(folder["id"], "quarterly-2024_statement.pdf", b"pdf bytes")
    assert r.status_code == 201, r.text
    mine = r.json()["id"]
    bob.upload(bob.root, "holiday.jpg", b"jpg")
    shared = ann.mkdir(ann.root, "Team <b>docs<b>")
    theirs = ann.upload(shared["id"], "statement draft.txt", b"t").json()["id"]
    hidden = ann.upload(ann.root, "statement private.txt", b"p").json()["id"]
    assert ann.post(f"/api/v1/nodes/{shared['id']}/shares", json={"email": bob.email, "role": "viewer"}).ok

    signed_in(browser, web_server, bob.email)
    browser.find_element(By.LINK_TEXT, "Search").click()
    box = wait_for(browser, lambda d: d.find_element(By.NAME, "q"))
    box.send_keys("statem", Keys.ENTER)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit"))
    found = {int(li.get_attribute("data-id")): li.text for li in browser.find_elements(By.CSS_SELECTOR, "li.hit")}
    assert set(found) == {mine, theirs} and hidden not in found
    assert "quarterly-2024_statement.pdf" in found[mine] and "My files/Taxes" in found[mine]
    assert "Team <b>docs<b>" in found[theirs]  # the folder's name as text, never markup
    assert not browser.find_elements(By.CSS_SELECTOR, "li.hit b")
    assert console_errors(browser) == []

    api = bob.get("/api/v1/search", params={"q": "statem"}).json()
    assert {i["id"] for i in api["items"]} == set(found)

    browser.set_window_size(*PHONE)
    browser.refresh()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "li.hit"))
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    shot(browser, "search-phone")
    browser.set_window_size(1280, 900)
    link = browser.find_element(By.CSS_SELECTOR, f'li.hit[data-id="{mine}"] .hit-where a')
    link.click()
    wait_for(browser, lambda d: "/f/" in d.current_url)
    assert browser.current_url.endswith(f"/f/{folder['id']}")
    assert any("quarterly-2024_statement.pdf" in td.text for td in browser.find_elements(By.CSS_SELECTOR, "td"))
    shot(browser, "search")
    assert console_errors(browser) == []
