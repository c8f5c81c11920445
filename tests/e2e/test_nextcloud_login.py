"""Nextcloud's Login Flow v2 over HTTP, as the desktop and mobile apps drive it: start a flow,
sign in on the page it opens (CSRF-protected, throttled like the API's sign-in), poll for the
app password exactly once, then use it for WebDAV."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
import requests

from .conftest import ENGINES, served

AGENT = 'Mozilla/5.0 (Linux) mirall/3.7.3 (Nextcloud) <script>alert("x")</script>'
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
LIFETIME = 8  # seconds a short_server's flow lives: long enough to open its page on a loaded machine


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "loginflow") as srv:
        yield srv


@pytest.fixture(scope="module", params=ENGINES[:1])
def short_server(request, tmp_path_factory):
    """A server whose flows expire after LIFETIME seconds, two at most open per client address."""
    env = {"BLOCKDRIVE_SECURITY_LOGIN_FLOW_SECONDS": str(LIFETIME), "BLOCKDRIVE_SECURITY_LOGIN_FLOWS_PER_ADDRESS": "2"}
    with served(request, tmp_path_factory, "loginflow-ttl", env) as srv:
        yield srv


def start(server, **headers) -> dict:
    r = requests.post(server.url + "/index.php/login/v2", headers={"User-Agent": AGENT, **headers}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()


def poll(flow: dict) -> requests.Response:
    return requests.post(flow["poll"]["endpoint"], data={"token": flow["poll"]["token"]}, timeout=60)


def open_page(flow: dict) -> tuple[requests.Session, str]:
    """A browser on the flow's page: its session (with the page's cookie) and the form's CSRF token."""
    browser = requests.Session()
    r = browser.get(flow["login"], timeout=60)
    assert r.status_code == 200, r.text
    return browser, CSRF.search(r.text).group(1)


def sign_in(browser, flow, csrf, email, password) -> requests.Response:
    return browser.post(flow["login"], data={"csrf": csrf, "email": email, "password": password}, timeout=60)


def test_the_whole_flow_gives_a_working_app_password_once(server):
    user = server.user()
    flow = start(server)
    assert set(flow) == {"poll", "login"}
    assert flow["poll"]["endpoint"] == server.url + "/index.php/login/v2/poll"
    assert flow["login"].startswith(server.url + "/index.php/login/v2/flow/")
    assert flow["login"].rsplit("/", 1)[1] != flow["poll"]["token"]
    assert len(flow["poll"]["token"]) >= 43  # 256 bits
    assert poll(flow).status_code == 404

    browser = requests.Session()
    page = browser.get(flow["login"], timeout=60)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert 'type="password"' in page.text and 'name="email"' in page.text
    assert "&lt;script&gt;alert(" in page.text and "<script>" not in page.text  # the app's name, escaped
    csrf = CSRF.search(page.text).group(1)

    wrong = sign_in(browser, flow, csrf, user.email, "wrong-password")
    assert wrong.status_code == 200 and "Wrong email or password" in wrong.text
    assert poll(flow).status_code == 404  # still pending
    csrf = CSRF.search(wrong.text).group(1)

    done = sign_in(browser, flow, csrf, user.email, "password123")
    assert done.status_code == 200 and "You can close this window" in done.text
    assert "bd_" not in done.text  # the app password goes to the app only

    r = poll(flow)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"server", "loginName", "appPassword"}
    assert body["server"] == server.url and body["loginName"] == user.email
    assert poll(flow).status_code == 404  # once only
    assert browser.get(flow["login"], timeout=60).status_code == 404  # and the page is gone

    dav = requests.request("PROPFIND", f"{server.url}/remote.php/dav/files/{quote(user.email)}/",
                           auth=(body["loginName"], body["appPassword"]), headers={"Depth": "0"}, timeout=60)
    assert dav.status_code == 207, dav.text
    tokens = user.get("/api/v1/auth/tokens").json()["items"]
    assert any(t["name"].startswith("Nextcloud app: Mozilla/5.0") for t in tokens)


def test_a_form_without_its_csrf_token_or_cookie_is_refused(server):
    user = server.user()
    flow = start(server)
    browser, csrf = open_page(flow)
    assert sign_in(browser, flow, "", user.email, "password123").status_code == 403
    assert sign_in(requests.Session(), flow, csrf, user.email, "password123").status_code == 403  # no cookie
    other, other_csrf = open_page(start(server))
    assert sign_in(browser, flow, other_csrf, user.email, "password123").status_code == 403  # another flow's
    assert poll(flow).status_code == 404
    assert sign_in(browser, flow, csrf, user.email, "password123").status_code == 200
    assert poll(flow).status_code == 200


def test_wrong_passwords_are_throttled_like_the_api_sign_in(server):
    user = server.user()
    flow = start(server)
    browser, csrf = open_page(flow)
    for _ in range(10):
        r = sign_in(browser, flow, csrf, user.email, "wrong-password")
        if r.status_code == 429:
            break
        csrf = CSRF.search(r.text).group(1)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1 and "Try again in" in r.text
    assert poll(flow).status_code == 404


def test_forwarded_headers_from_an_untrusted_peer_do_not_change_the_urls(server):
    flow = start(server, **{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert flow["poll"]["endpoint"].startswith(server.url + "/")
    assert flow["login"].startswith(server.url + "/")


def test_unknown_tokens_and_flows_are_404(server):
    assert requests.post(server.url + "/index.php/login/v2/poll", data={"token": "nope"}, timeout=60).status_code == 404
    assert requests.post(server.url + "/index.php/login/v2/poll", timeout=60).status_code == 404
    assert requests.get(server.url + "/index.php/login/v2/flow/nope", timeout=60).status_code == 404


def test_an_expired_flow_is_404_and_no_longer_counts_against_its_address(short_server):
    user = short_server.user()
    started = time.monotonic()
    flow, _ = start(short_server), start(short_server)
    third = requests.post(short_server.url + "/index.php/login/v2", timeout=60)
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
    browser, csrf = open_page(flow)
    time.sleep(max(0.0, started + LIFETIME + 1.5 - time.monotonic()))  # past the flows' lifetime
    assert browser.get(flow["login"], timeout=60).status_code == 404
    assert sign_in(browser, flow, csrf, user.email, "password123").status_code == 404
    assert poll(flow).status_code == 404
    start(short_server)
