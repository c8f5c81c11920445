"""The web app's sign-in: the form at ``/``, the session it opens (server-side, revocable,
CSRF-bound), the pages' security headers, and the JSON API reached with the session cookie
only when the CSRF header comes with a change."""

from __future__ import annotations

import io

from tests.unit.webapi.web_support import csrf_of, page_csrf, sign_in


def test_signed_out_root_is_the_signin_form_with_a_strict_csp(web):
    app, _d, _u = web
    r = app.test_client().get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    body = r.get_data(as_text=True)
    assert 'name="email"' in body and 'name="password"' in body
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'self'" in csp
    assert r.headers["Cache-Control"] == "no-store"


def test_signin_opens_a_session_and_shows_the_root_folder(web):
    app, d, u = web
    d.put(u["bob"].id, u["bob"].root_id, "<b>hello<b>.txt", io.BytesIO(b"hi"))
    c = app.test_client()
    r = sign_in(c, "bob@example.com", "password-bob")
    assert r.status_code == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    page = c.get("/").get_data(as_text=True)
    assert "&lt;b&gt;hello&lt;b&gt;.txt" in page and "<b>hello" not in page  # escaped, never markup
    assert "bob@example.com" in page


def test_wrong_password_is_a_401_form_and_no_session(web):
    app, _d, _u = web
    c = app.test_client()
    r = sign_in(c, "bob@example.com", "nope-nope")
    assert r.status_code == 401 and "Wrong email or password" in r.get_data(as_text=True)
    assert 'name="password"' in c.get("/").get_data(as_text=True)


def test_signin_without_csrf_is_refused(web):
    app, _d, _u = web
    c = app.test_client()
    r = c.post("/", data={"email": "bob@example.com", "password": "password-bob"})
    assert r.status_code == 403
    assert 'name="password"' in c.get("/").get_data(as_text=True)


def test_signout_closes_the_session_on_the_server(web):
    app, _d, _u = web
    c = app.test_client()
    sign_in(c, "bob@example.com", "password-bob")
    cookie = c.get_cookie("blockdrive_session").value
    token = page_csrf(c)
    assert c.post("/logout", data={"csrf": token}).status_code == 200
    # a copy of the old cookie is worth nothing now
    other = app.test_client()
    other.set_cookie("blockdrive_session", cookie)
    assert 'name="password"' in other.get("/").get_data(as_text=True)
    assert other.get("/api/v1/account").status_code == 401


def test_next_goes_only_to_a_path_on_this_site(web):
    app, _d, _u = web
    c = app.test_client()
    token = csrf_of(c.get("/").data)
    r = c.post("/", data={"email": "bob@example.com", "password": "password-bob", "csrf": token,
                          "next": "//evil.example/x"})
    assert r.headers["Location"] == "/"


def test_api_takes_the_session_cookie_but_changes_need_the_csrf_header(web):
    app, _d, u = web
    c = app.test_client()
    sign_in(c, "bob@example.com", "password-bob")
    assert c.get("/api/v1/account").get_json()["email"] == "bob@example.com"
    root = u["bob"].root_id
    r = c.post(f"/api/v1/nodes/{root}/children", json={"name": "x", "kind": "folder"})
    assert r.status_code == 403  # a cross-site form could send the cookie, never the header
    r = c.post(f"/api/v1/nodes/{root}/children", json={"name": "x", "kind": "folder"},
               headers={"X-CSRF-Token": page_csrf(c)})
    assert r.status_code == 201


def test_an_admin_signed_in_with_a_password_reaches_the_dashboard(web):
    app, _d, _u = web
    c = app.test_client()
    sign_in(c, "ann@example.com", "password-ann")
    assert c.get("/admin").status_code == 200
    c2 = app.test_client()
    sign_in(c2, "bob@example.com", "password-bob")
    assert c2.get("/admin").status_code == 303  # not an admin: the dashboard's own sign-in


def test_a_post_from_another_site_is_refused_even_with_the_token(web):
    app, _d, u = web
    c = app.test_client()
    sign_in(c, "bob@example.com", "password-bob")
    token = page_csrf(c)
    root = u["bob"].root_id
    evil = {"Origin": "https://evil.example"}
    assert c.post(f"/f/{root}/folders", data={"csrf": token, "name": "x"}, headers=evil).status_code == 403
    r = c.post(f"/api/v1/nodes/{root}/children", json={"name": "x", "kind": "folder"},
               headers={"X-CSRF-Token": token, **evil})
    assert r.status_code == 403
    r = c.post(f"/f/{root}/folders", data={"csrf": token, "name": "x"}, headers={"Origin": "http://localhost"})
    assert r.status_code == 303
    assert [n.name for n in _d.list_children(u["bob"].id, root)[0]] == ["x"]
