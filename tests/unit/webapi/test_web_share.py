"""Sharing in the web app: the share page and "Shared with me" (signed in), and the public
link pages a browser gets (``Accept: text/html``) while API clients keep today's JSON: file,
folder, password form remembered by the session, expired/revoked/unknown links, file drops."""

from __future__ import annotations

import io
import re

from storage import clock
from storage.sharing import Sharing
from tests.unit.webapi.web_support import csrf_of, page_csrf, sign_in

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _tree(d, user):
    """user: /pub/ holding <i>x<i>.txt and sub/deep.txt; /pub/sub/ is a folder."""
    pub = d.mkdir(user.id, user.root_id, "pub")
    f = d.put(user.id, pub.id, "<i>x<i>.txt", io.BytesIO(b"hello link")).node
    sub = d.mkdir(user.id, pub.id, "sub")
    deep = d.put(user.id, sub.id, "deep.txt", io.BytesIO(b"deep bytes")).node
    return pub, f, sub, deep


def test_api_clients_keep_getting_json(web):
    app, d, u = web
    pub, f, _sub, _deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, pub.id)
    c = app.test_client()
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}, {"Accept": "application/json, text/html"}):
        r = c.get(f"/s/{token}", headers=headers)
        assert r.status_code == 200 and r.mimetype == "application/json", headers
        body = r.get_json()
        assert set(body) == {"node", "link", "items", "next_cursor"}
        assert [i["name"] for i in body["items"]] == ["<i>x<i>.txt", "sub"]
        assert r.headers["Referrer-Policy"] == "no-referrer"
    r = c.get(f"/s/{token}/content", query_string={"node_id": f.id}, headers=HTML)
    assert r.data == b"hello link"  # a download is bytes whatever the browser accepts


def test_a_browser_gets_a_folder_page_with_escaped_names_and_subfolders(web):
    app, d, u = web
    pub, f, sub, deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, pub.id)
    c = app.test_client()
    r = c.get(f"/s/{token}", headers=HTML)
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "&lt;i&gt;x&lt;i&gt;.txt" in page and "<i>x<i>" not in page
    assert f'/s/{token}/content?node_id={f.id}' in page and f'/s/{token}?node_id={sub.id}' in page
    assert 'class="top"' not in page  # no header nav for an anonymous visitor
    assert r.headers["Referrer-Policy"] == "no-referrer" and "script-src 'self'" in r.headers["Content-Security-Policy"]
    page = c.get(f"/s/{token}", query_string={"node_id": sub.id}, headers=HTML).get_data(as_text=True)
    assert "deep.txt" in page and f'/s/{token}/content?node_id={deep.id}' in page
    assert c.get(f"/s/{token}/content", query_string={"node_id": deep.id}).data == b"deep bytes"


def test_a_file_link_page_has_name_size_and_download(web):
    app, d, u = web
    _pub, f, _sub, _deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, f.id)
    page = app.test_client().get(f"/s/{token}", headers=HTML).get_data(as_text=True)
    assert "&lt;i&gt;x&lt;i&gt;.txt" in page and "10 B" in page
    assert re.search(rf'id="link-download"[^>]*href="/s/{token}/content"', page)


def test_password_form_remembers_the_right_password_in_the_session(web):
    app, d, u = web
    _pub, f, _sub, _deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, f.id, password="open sesame")
    c = app.test_client()
    r = c.get(f"/s/{token}", headers=HTML)
    assert r.status_code == 200 and 'name="password"' in r.get_data(as_text=True)
    assert c.get(f"/s/{token}").status_code == 401  # JSON clients: unchanged
    csrf = csrf_of(r.data)
    r = c.post(f"/s/{token}", data={"csrf": csrf, "password": "nope"})
    assert r.status_code == 401 and "Wrong password" in r.get_data(as_text=True)
    assert c.get(f"/s/{token}/content").status_code == 401
    r = c.post(f"/s/{token}", data={"csrf": csrf, "password": "open sesame"})
    assert r.status_code == 303 and r.headers["Location"] == f"/s/{token}"
    assert "open sesame" not in r.headers.get("Set-Cookie", "")
    page = c.get(f"/s/{token}", headers=HTML).get_data(as_text=True)
    assert "&lt;i&gt;x&lt;i&gt;.txt" in page and 'id="link-download"' in page
    assert c.get(f"/s/{token}/content").data == b"hello link"  # from the session, no header
    fresh = app.test_client()
    assert fresh.get(f"/s/{token}/content").status_code == 401
    assert fresh.get(f"/s/{token}/content", headers={"X-Link-Password": "open sesame"}).data == b"hello link"


def test_the_password_form_needs_csrf_and_counts_wrong_passwords(web):
    app, d, u = web
    _pub, f, _sub, _deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, f.id, password="pw")
    c = app.test_client()
    csrf = csrf_of(c.get(f"/s/{token}", headers=HTML).data)
    assert c.post(f"/s/{token}", data={"password": "pw"}).status_code == 403
    assert c.get(f"/s/{token}/content").status_code == 401  # the refused post unlocked nothing
    for _ in range(d.config["server"]["auth_max_failures"]):
        assert c.post(f"/s/{token}", data={"csrf": csrf, "password": "guess"}).status_code == 401
    r = c.post(f"/s/{token}", data={"csrf": csrf, "password": "pw"})
    assert r.status_code == 429 and "Too many wrong passwords" in r.get_data(as_text=True)


def test_expired_revoked_and_unknown_links_get_clear_pages(web):
    app, d, u = web
    _pub, f, _sub, _deep = _tree(d, u["bob"])
    sh = Sharing(d)
    _li, expiring = sh.create_link(u["bob"].id, f.id, expires_in=60)
    revoked, token = sh.create_link(u["bob"].id, f.id)
    sh.revoke_link(u["bob"].id, f.id, revoked.id)
    c = app.test_client()
    r = c.get(f"/s/{token}", headers=HTML)
    assert r.status_code == 410 and "revoked" in r.get_data(as_text=True)
    r = c.get("/s/bl_no-such-token", headers=HTML)
    assert r.status_code == 404 and "does not exist" in r.get_data(as_text=True)
    clock.advance(61)
    r = c.get(f"/s/{expiring}", headers=HTML)
    assert r.status_code == 410 and "expired" in r.get_data(as_text=True)
    assert c.get(f"/s/{expiring}").status_code == 410 and c.get(f"/s/{expiring}").mimetype == "application/problem+json"


def test_a_drop_page_takes_files_and_never_shows_the_folder(web):
    app, d, u = web
    pub, _f, _sub, _deep = _tree(d, u["bob"])
    _li, token = Sharing(d).create_link(u["bob"].id, pub.id, role="uploader")
    c = app.test_client()
    r = c.get(f"/s/{token}", headers=HTML)
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and 'type="file"' in page and "multiple" in page
    assert "x&lt;i&gt;" not in page and "sub" not in re.sub(r"<[^>]+>", "", page).split()
    assert c.get(f"/s/{token}").status_code == 403  # JSON reads are refused too
    csrf = csrf_of(r.data)
    r = c.post(f"/s/{token}/drop", data={"files": (io.BytesIO(b"nope"), "nocsrf.txt")},
               content_type="multipart/form-data")
    assert r.status_code == 403
    r = c.post(f"/s/{token}/drop", data={"csrf": csrf, "files": [(io.BytesIO(b"one"), "<b>a<b>.txt"),
                                                                  (io.BytesIO(b"two"), "sub")]},
               content_type="multipart/form-data")
    assert r.status_code == 303
    page = c.get(f"/s/{token}", headers=HTML).get_data(as_text=True)
    assert "&lt;b&gt;a&lt;b&gt;.txt" in page and 'id="received"' in page
    assert "x&lt;i&gt;" not in page
    kids = {n.name: n for n in d.list_children(u["bob"].id, pub.id)[0]}
    assert set(kids) == {"<i>x<i>.txt", "sub", "<b>a<b>.txt", "sub (2)"}  # the folder "sub" stays
    assert kids["sub"].kind == "folder" and kids["sub (2)"].size == 3
    other = app.test_client()
    assert 'id="received"' not in other.get(f"/s/{token}", headers=HTML).get_data(as_text=True)
    r = other.put(f"/s/{token}/files/<i>x<i>.txt", data=b"via api")
    assert r.status_code == 201 and r.get_json() == {"received": "<i>x<i>.txt", "size": 7,
                                                     "sha256": r.get_json()["sha256"]}
    assert "<i>x<i> (2).txt" in {n.name for n in d.list_children(u["bob"].id, pub.id)[0]}


def test_share_page_grants_links_once_and_shared_with_me(web):
    app, d, u = web
    pub, _f, _sub, _deep = _tree(d, u["ann"])
    c = app.test_client()
    sign_in(c, "ann@example.com", "password-ann")
    r = c.get(f"/share/{pub.id}")
    assert r.status_code == 200 and "People with access" in r.get_data(as_text=True)
    csrf = page_csrf(c, f"/share/{pub.id}")
    r = c.post(f"/share/{pub.id}/people", data={"csrf": csrf, "email": "bob@example.com", "role": "editor",
                                                "next": f"/share/{pub.id}"})
    assert r.status_code == 303 and r.headers["Location"] == f"/share/{pub.id}"
    assert "bob@example.com" in c.get(f"/share/{pub.id}").get_data(as_text=True)
    assert c.post(f"/share/{pub.id}/people", data={"email": "x@example.com", "role": "viewer"}).status_code == 403
    r = c.post(f"/share/{pub.id}/links", data={"csrf": csrf, "role": "uploader", "expires_days": "7",
                                               "password": "", "next": f"/share/{pub.id}"})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers  # in this answer, never in a cookie
    page = r.get_data(as_text=True)
    url = re.search(r'id="new-link-url" type="text" readonly value="([^"]+)"', page).group(1)
    token = url.rsplit("/s/", 1)[1]
    made = Sharing(d).link_info(token, None)
    assert made.role == "uploader" and (made.expires_at - made.created_at).days == 7
    assert token not in c.get(f"/share/{pub.id}").get_data(as_text=True)  # shown once only
    link = Sharing(d).list_links(u["ann"].id, pub.id)[0]
    r = c.post(f"/share/{pub.id}/links/{link.id}/revoke", data={"csrf": csrf, "next": f"/share/{pub.id}"})
    assert r.status_code == 303 and Sharing(d).list_links(u["ann"].id, pub.id)[0].revoked_at is not None
    r = c.post(f"/share/{pub.id}/links", data={"csrf": csrf, "role": "editor", "next": f"/share/{pub.id}"})
    assert r.status_code == 303 and "role must be one of" in c.get(f"/share/{pub.id}").get_data(as_text=True)
    r = c.post(f"/share/{pub.id}/links", data={"csrf": csrf, "expires_days": "٣", "next": f"/share/{pub.id}"})
    assert r.status_code == 303 and "1 to 3650 days" in c.get(f"/share/{pub.id}").get_data(as_text=True)
    assert len(Sharing(d).list_links(u["ann"].id, pub.id)) == 1

    b = app.test_client()
    sign_in(b, "bob@example.com", "password-bob")
    page = b.get("/shared").get_data(as_text=True)
    assert f'href="/f/{pub.id}"' in page and "can edit" in page
    assert b.get(f"/f/{pub.id}").status_code == 200
    assert b.get(f"/share/{pub.id}").status_code == 403  # an editor does not manage the shares
    r = b.post(f"/share/{pub.id}/people/{u['bob'].id}/revoke", data={"csrf": page_csrf(b, "/shared")})
    assert r.status_code == 303
    assert [n.id for n in Sharing(d).shared_with_me(u["bob"].id)] == [pub.id]  # refused: still shared
    r = c.post(f"/share/{pub.id}/people/{u['bob'].id}/revoke", data={"csrf": csrf, "next": f"/share/{pub.id}"})
    assert r.status_code == 303 and Sharing(d).shared_with_me(u["bob"].id) == []
    assert "Nothing is shared with you" in b.get("/shared").get_data(as_text=True)
