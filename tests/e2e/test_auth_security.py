"""Sign-in throttling, token lifecycle, admin sessions and invitations, through the real server
(gunicorn), behind a trusted proxy at 127.0.0.1 so that each test client can speak from an
address of its own through X-Forwarded-For."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
import requests
import sqlalchemy as sa

from storage.config import load_config
from tests.e2e.conftest import Client, ENGINES, served

PW = "password123"


def problem(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    if code:
        assert r.json()["type"].endswith("/" + code), r.text
    return r.json()


@pytest.fixture(scope="module", params=ENGINES)
def proxied(request, tmp_path_factory):
    with served(request, tmp_path_factory, "auth", {"BLOCKDRIVE_SECURITY_TRUSTED_PROXIES": "127.0.0.1/32, ::1"},
                fsck=False) as srv:
        yield srv


def via(srv, address: str, token: str | None = None) -> Client:
    """A client the trusted proxy (us, at 127.0.0.1) says is at ``address``."""
    c = Client(srv.url, token)
    c.s.headers["X-Forwarded-For"] = address
    return c


def login(srv, email: str, password: str = PW, address: str = "192.0.2.1", name: str | None = None):
    return via(srv, address).post("/api/v1/auth/tokens",
                                  json={"email": email, "password": password, **({"name": name} if name else {})})


def token_for(srv, email: str, address: str = "192.0.2.1", name: str | None = None) -> str:
    r = login(srv, email, address=address, name=name)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def hammer_until_waiting(c: Client, email: str, password: str = "wrong-pass", at_least: int = 4) -> None:
    """Fail from ``c`` until the answer is a wait of ``at_least`` seconds: long enough that the
    next request surely falls inside it. Shorter waits are sat out, as a client would: each
    failure after them doubles the next (1, 2, 4 ... seconds)."""
    for _ in range(40):
        r = c.post("/api/v1/auth/tokens", json={"email": email, "password": password})
        if r.status_code == 429:
            wait = int(r.headers["Retry-After"])
            assert problem(r, 429, "rate-limited")["retry_after"] == wait
            if wait >= at_least:
                return
            time.sleep(wait)
        else:
            problem(r, 401)
    raise AssertionError("never throttled")


def db(srv):
    return sa.create_engine(load_config(env=srv.env).database_url)


# ---- throttling ------------------------------------------------------------------------------

def test_auth_owner_signs_in_from_elsewhere_while_an_address_hammers_the_account(proxied):
    owner = proxied.user()
    attacker = via(proxied, "203.0.113.7")
    hammer_until_waiting(attacker, owner.email)
    # the attacker's address waits, even with the right password ...
    r = attacker.post("/api/v1/auth/tokens", json={"email": owner.email, "password": PW})
    assert problem(r, 429, "rate-limited")["retry_after"] > 0 and int(r.headers["Retry-After"]) > 0
    # ... the owner elsewhere does not, and a typo there costs no wait either
    problem(login(proxied, owner.email, "typo-pass", address="198.51.100.9"), 401)
    r = login(proxied, owner.email, address="198.51.100.9")
    assert r.status_code == 201, r.text
    assert via(proxied, "198.51.100.9", r.json()["token"]).get("/api/v1/account").json()["email"] == owner.email


def test_auth_one_address_cannot_try_many_accounts(proxied):
    victim = proxied.user()
    bot = via(proxied, "203.0.113.99")
    for i in range(40):  # one guess per account: the address's own count still runs out
        r = bot.post("/api/v1/auth/tokens", json={"email": f"user{i}@example.org", "password": "guess-123"})
        if r.status_code == 429:
            break
        problem(r, 401)
    else:
        raise AssertionError("one address tried 40 accounts unhindered")
    hammer_until_waiting(bot, "other@example.org")
    problem(bot.post("/api/v1/auth/tokens", json={"email": victim.email, "password": PW}), 429)
    assert login(proxied, victim.email, address="198.51.100.10").status_code == 201


def test_auth_x_forwarded_for_is_ignored_from_an_untrusted_peer(server):
    owner = server.user()  # `server` trusts no proxy
    for i in range(40):  # a new made-up address each time: it must not reset the count
        r = via(server, f"203.0.113.{i}").post("/api/v1/auth/tokens", json={"email": owner.email, "password": "nope-nope"})
        if r.status_code == 429:
            break
        problem(r, 401)
    else:
        raise AssertionError("X-Forwarded-For from an untrusted peer was believed")
    assert i >= 6  # the free failures from this one address, then one of the first short waits ...
    assert problem(r, 429)["retry_after"] <= 4  # ... not a lock of a quarter of an hour


# ---- tokens ------------------------------------------------------------------------------------

def test_auth_tokens_expire_list_and_revoke(proxied):
    u = proxied.user()
    a = token_for(proxied, u.email, name="laptop")
    b = token_for(proxied, u.email, name="phone")
    ca, cb = via(proxied, "192.0.2.1", a), via(proxied, "192.0.2.1", b)
    r = ca.get("/api/v1/auth/tokens")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    items = r.json()["items"]
    assert "bd_" not in r.text and all(set(t) == {"id", "name", "kind", "created_at", "last_used_at", "expires_at",
                                                  "current"} for t in items)
    by_name = {t["name"]: t for t in items}
    assert set(by_name) == {"cli", "laptop", "phone"}
    assert by_name["laptop"]["current"] and not by_name["phone"]["current"]
    assert by_name["laptop"]["last_used_at"] is not None  # this very request used it
    # sign-in tokens expire after token_ttl_days (90), the CLI's after cli_token_ttl_days (365)
    created = dt.datetime.fromisoformat(by_name["laptop"]["created_at"].rstrip("Z"))
    expires = dt.datetime.fromisoformat(by_name["laptop"]["expires_at"].rstrip("Z"))
    assert abs((expires - created) - dt.timedelta(days=90)) < dt.timedelta(minutes=1)
    cli_expires = dt.datetime.fromisoformat(by_name["cli"]["expires_at"].rstrip("Z"))
    assert cli_expires - expires > dt.timedelta(days=270)
    # another user's token id is not found; revoking one's own works at once
    other = proxied.user()
    problem(other.delete(f"/api/v1/auth/tokens/{by_name['phone']['id']}"), 404)
    assert cb.get("/api/v1/account").status_code == 200
    assert ca.delete(f"/api/v1/auth/tokens/{by_name['phone']['id']}").status_code == 204
    problem(cb.get("/api/v1/account"), 401)
    problem(ca.delete(f"/api/v1/auth/tokens/{by_name['phone']['id']}"), 404)
    assert {t["name"] for t in ca.get("/api/v1/auth/tokens").json()["items"]} == {"cli", "laptop"}
    # an expired token is refused, and no longer listed
    with db(proxied).begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET expires_at = :t WHERE id = :id"),
                     {"t": dt.datetime.utcnow() - dt.timedelta(seconds=5), "id": by_name["laptop"]["id"]})
    problem(ca.get("/api/v1/account"), 401)
    assert [t["name"] for t in u.get("/api/v1/auth/tokens").json()["items"]] == ["cli"]


def test_auth_logout_revokes_the_calling_token_only(proxied):
    u = proxied.user()
    a, b = token_for(proxied, u.email), token_for(proxied, u.email)
    ca = via(proxied, "192.0.2.1", a)
    assert ca.post("/api/v1/auth/logout").status_code == 204
    problem(ca.get("/api/v1/account"), 401)
    problem(ca.post("/api/v1/auth/logout"), 401)
    assert via(proxied, "192.0.2.1", b).get("/api/v1/account").status_code == 200
    assert u.get("/api/v1/account").status_code == 200


def test_auth_password_change_keeps_the_token_used_and_revokes_the_others(proxied):
    u = proxied.user()
    a, b = token_for(proxied, u.email), token_for(proxied, u.email)
    ca, cb = via(proxied, "192.0.2.1", a), via(proxied, "192.0.2.1", b)
    problem(ca.post("/api/v1/account/password", json={"old_password": "not-it-at-all", "new_password": "n3w-password"}),
            403)
    problem(ca.post("/api/v1/account/password", json={"old_password": PW, "new_password": "short"}), 400)
    problem(ca.post("/api/v1/account/password", json={"old_password": PW}), 400)
    assert cb.get("/api/v1/account").status_code == 200  # nothing changed so far
    r = ca.post("/api/v1/account/password", json={"old_password": PW, "new_password": "n3w-password"})
    assert r.status_code == 200 and r.json()["revoked"] == 2  # b and the CLI's token
    assert ca.get("/api/v1/account").status_code == 200
    problem(cb.get("/api/v1/account"), 401)
    problem(u.get("/api/v1/account"), 401)
    problem(login(proxied, u.email, PW, address="192.0.2.2"), 401)
    assert login(proxied, u.email, "n3w-password", address="192.0.2.2").status_code == 201


# ---- admin sessions --------------------------------------------------------------------------

def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


def admin_sign_in(srv, token: str, headers: dict | None = None) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    s.headers.update(headers or {})
    form = s.get(srv.url + "/admin/login")
    r = s.post(srv.url + "/admin/login", data={"token": token, "csrf": _csrf(form.text)}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return s, r


def _replay(srv, cookie: str) -> int:
    """GET /admin with nothing but a copied cookie value."""
    return requests.get(srv.url + "/admin", cookies={"blockdrive_session": cookie}, allow_redirects=False).status_code


def test_auth_admin_cookie_dies_on_sign_out_and_on_token_logout(proxied):
    token = proxied.cli("user", "create", "boss@example.com", "--password", PW, "--admin").strip().splitlines()[-1]
    s, _ = admin_sign_in(proxied, token)
    copied = s.cookies["blockdrive_session"]
    assert token not in copied
    page = s.get(proxied.url + "/admin", allow_redirects=False)
    assert page.status_code == 200 and _replay(proxied, copied) == 200
    listed = via(proxied, "192.0.2.1", token).get("/api/v1/auth/tokens").json()["items"]
    assert [t["kind"] for t in listed].count("session") == 1
    assert s.post(proxied.url + "/admin/logout", data={"csrf": _csrf(page.text)}).status_code == 200
    assert _replay(proxied, copied) == 303  # the copy is dead too, not just the signed-out browser
    # a session also ends when the API token it was opened with logs out
    s2, _ = admin_sign_in(proxied, token)
    copied2 = s2.cookies["blockdrive_session"]
    assert _replay(proxied, copied2) == 200
    assert via(proxied, "192.0.2.1", token).post("/api/v1/auth/logout").status_code == 204
    assert _replay(proxied, copied2) == 303


def https_sign_in(srv, token: str) -> list[str]:
    """Sign in to /admin with X-Forwarded-Proto: https; the Set-Cookie headers of both steps.
    (The cookie is sent back by hand: a client keeps a Secure cookie for https only.)"""
    proto = {"X-Forwarded-Proto": "https"}
    form = requests.get(srv.url + "/admin/login", headers=proto)
    cookie = form.cookies["blockdrive_session"]
    r = requests.post(srv.url + "/admin/login", data={"token": token, "csrf": _csrf(form.text)},
                      headers={**proto, "Cookie": f"blockdrive_session={cookie}"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return [form.headers["Set-Cookie"], r.headers["Set-Cookie"]]


def test_auth_admin_cookie_is_secure_behind_an_https_proxy(proxied):
    token = proxied.cli("user", "create", "boss2@example.com", "--password", PW, "--admin").strip().splitlines()[-1]
    for set_cookie in https_sign_in(proxied, token):
        assert "; Secure" in set_cookie and "HttpOnly" in set_cookie
    _, r = admin_sign_in(proxied, token)
    assert "Secure" not in r.headers["Set-Cookie"]


def test_auth_x_forwarded_proto_from_an_untrusted_peer_does_not_make_cookies_secure(server):
    token = server.cli("user", "create", "boss3@example.com", "--password", PW, "--admin").strip().splitlines()[-1]
    for set_cookie in https_sign_in(server, token):
        assert "Secure" not in set_cookie
    sessions = [t for t in Client(server.url, token).get("/api/v1/auth/tokens").json()["items"] if t["kind"] == "session"]
    assert len(sessions) == 1 and not sessions[0]["current"]  # the sign-in opened a server-side session


# ---- invitations -----------------------------------------------------------------------------

def test_auth_sharing_to_an_unknown_address_invites_it_and_answers_the_same(proxied):
    owner, known = proxied.user(), proxied.user()
    folder = owner.mkdir(owner.root, "team")
    f = owner.upload(folder["id"], "plan.txt", b"the plan").json()
    newcomer = "Newcomer@Example.com"
    r1 = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": known.email, "role": "editor"})
    r2 = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": newcomer, "role": "editor"})
    assert r1.status_code == r2.status_code == 201
    assert r1.headers["Content-Type"] == r2.headers["Content-Type"]
    b1, b2 = r1.json(), r2.json()
    assert set(b1) == set(b2)
    assert {k: v for k, v in b1.items() if k not in ("email", "created_at")} == \
        {k: v for k, v in b2.items() if k not in ("email", "created_at")}
    assert b2["email"] == newcomer.lower()
    # granting again changes the role, the same way for both
    r1 = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": known.email, "role": "viewer"})
    r2 = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": newcomer, "role": "viewer"})
    assert r1.status_code == r2.status_code == 200 and set(r1.json()) == set(r2.json())
    # the owner's list tells them apart
    items = owner.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"]
    assert [(i["email"], i["pending"], i["user_id"] is None, i["role"]) for i in items] == \
        [(known.email, False, False, "viewer"), (newcomer.lower(), True, True, "viewer")]
    # signing up with that address turns the invitation into a share
    new = proxied.user(newcomer.lower())
    assert [n["id"] for n in new.get("/api/v1/shared-with-me").json()["items"]] == [folder["id"]]
    assert new.get(f"/api/v1/nodes/{f['id']}/content").content == b"the plan"
    problem(new.upload(folder["id"], "x.txt", b"x"), 403)  # viewer, as last granted
    items = owner.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"]
    assert [(i["email"], i["pending"], i["user_id"]) for i in items] == \
        [(known.email, False, known.id), (newcomer.lower(), False, new.id)]


def test_auth_a_revoked_invitation_grants_nothing(proxied):
    owner, stranger = proxied.user(), proxied.user()
    folder = owner.mkdir(owner.root, "secret")
    owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": "later@example.net", "role": "viewer"})
    inv = owner.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"][0]
    assert inv["pending"] and inv["invitation_id"]
    path = f"/api/v1/nodes/{folder['id']}/invitations/{inv['invitation_id']}"
    problem(stranger.delete(path), 404)  # not theirs to see
    assert owner.delete(path).status_code == 204
    problem(owner.delete(path), 404)
    assert owner.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"] == []
    later = proxied.user("later@example.net")
    assert later.get("/api/v1/shared-with-me").json()["items"] == []
    problem(later.get(f"/api/v1/nodes/{folder['id']}"), 404)
