"""The account page: the quota split as a bar and as text, the password change (this
browser stays signed in, every other token and session dies), tokens created (shown once)
and revoked, CSRF; and a file's preview page with its sandboxed, never-HTML content routes."""

from __future__ import annotations

import io
import re

from PIL import Image

from tests.unit.webapi.web_support import page_csrf, sign_in
from webapi.web.account import BAR_WIDTH, quota_segments
from webapi.web.preview import FRAME_CSP
from storage.quota import Usage


def signed_in(app, email="bob@example.com", pw="password-bob"):
    c = app.test_client()
    assert sign_in(c, email, pw).status_code == 303
    return c


def test_quota_segments_lie_end_to_end_and_scale_to_the_quota():
    segs, free = quota_segments(Usage(quota=1000, used=600, pending=100, current=300, old_versions=200, trash=100))
    assert [(s.css, s.x, s.width) for s in segs] == [
        ("current", 0, 300), ("old", 300, 200), ("trash", 500, 100), ("pending", 600, 100)]
    assert free == 300
    over, free = quota_segments(Usage(quota=100, used=400, pending=0, current=400, old_versions=0, trash=0))
    assert over[0].width == BAR_WIDTH and free == 0
    tiny, _free = quota_segments(Usage(quota=10**12, used=10, pending=0, current=5, old_versions=5, trash=0))
    assert [(s.x, s.width) for s in tiny] == [(0, 4), (4, 4), (8, 0), (8, 0)]  # visible, yet in order


def test_account_page_shows_the_split_and_escapes_the_email(web):
    app, d, u = web
    hostile = d.create_user("<b>x</b>@example.com", "password-xx")[0]
    d.put(hostile.id, hostile.root_id, "a.txt", io.BytesIO(b"v1" * 1000))
    d.put(hostile.id, hostile.root_id, "a.txt", io.BytesIO(b"v2" * 500))
    c = signed_in(app, "<b>x</b>@example.com", "password-xx")
    r = c.get("/account")
    assert r.status_code == 200 and "unsafe-inline" not in r.headers["Content-Security-Policy"]
    body = r.get_data(as_text=True)
    assert "&lt;b&gt;x&lt;/b&gt;@example.com" in body and "<b>x</b>" not in body
    assert "style=" not in body
    legend = dict(re.findall(r'data-part="(\w+)">.*?<strong>([^<]+)</strong>', body))
    assert legend["current"] == "1.0 KB" and legend["old"] == "2.0 KB" and legend["trash"] == "0 B"
    assert re.search(r'<svg class="quota-bar"[^>]*role="img" aria-label="3.0 KB of 15.0 GB used"', body)
    assert re.search(r'<rect class="seg current" x="0.0" y="0" width="4.0"', body)


def test_account_page_needs_a_session(web):
    app, _d, _u = web
    r = app.test_client().get("/account")
    assert r.status_code == 303 and "next=/account" in r.headers["Location"]


def test_password_change_keeps_this_browser_and_ends_every_other_token_and_session(web):
    app, d, _u = web
    c = signed_in(app)
    other = signed_in(app)
    api_token = d.login("bob@example.com", "password-bob")
    token = page_csrf(c, "/account")
    r = c.post("/account/password", data={"csrf": token, "old_password": "password-bob",
                                          "new_password": "password-new", "repeat_password": "password-new",
                                          "next": "/account"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/account")
    page = c.get("/account").get_data(as_text=True)
    assert "Password changed" in page and "stays signed in" in page
    assert other.get("/account").status_code == 303  # the other browser is signed out
    assert app.test_client().get("/api/v1/account", headers={"Authorization": f"Bearer {api_token}"}).status_code == 401
    assert d.login("bob@example.com", "password-new")


def test_password_change_refused_keeps_the_password(web):
    app, d, _u = web
    c = signed_in(app)
    token = page_csrf(c, "/account")
    wrong = {"csrf": token, "old_password": "nope-nope", "new_password": "password-new",
             "repeat_password": "password-new", "next": "/account"}
    assert c.post("/account/password", data=wrong).status_code == 303
    assert "current password is wrong" in c.get("/account").get_data(as_text=True)
    differ = dict(wrong, old_password="password-bob", repeat_password="password-other")
    c.post("/account/password", data=differ)
    assert "differ" in c.get("/account").get_data(as_text=True)
    assert c.post("/account/password", data=dict(differ, csrf="forged", repeat_password="password-new")).status_code == 403
    assert d.login("bob@example.com", "password-bob")


def test_tokens_are_created_shown_once_and_revoked(web):
    app, _d, _u = web
    c = signed_in(app)
    token = page_csrf(c, "/account")
    r = c.post("/account/tokens", data={"csrf": token, "name": "<i>laptop</i>", "password": "password-bob",
                                        "next": "/account"})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers  # in this answer, never in a cookie
    page = r.get_data(as_text=True)
    secret = re.search(r'<code id="new-token" class="secret">(bd_[^<]+)</code>', page).group(1)
    assert "&lt;i&gt;laptop&lt;/i&gt;" in page and "app password" in page
    assert secret not in c.get("/account").get_data(as_text=True)  # shown once
    api = app.test_client()
    assert api.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    token_id = re.search(r'data-token-id="(\d+)"', c.get("/account").get_data(as_text=True)).group(1)
    assert c.post(f"/account/tokens/{token_id}/revoke", data={"csrf": "forged"}).status_code == 403
    assert api.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert c.post(f"/account/tokens/{token_id}/revoke", data={"csrf": token}).status_code == 303
    assert api.get("/api/v1/account", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert f'data-token-id="{token_id}"' not in c.get("/account").get_data(as_text=True)


def test_creating_a_token_needs_the_password(web):
    app, _d, _u = web
    c = signed_in(app)
    token = page_csrf(c, "/account")
    c.post("/account/tokens", data={"csrf": token, "name": "x", "password": "wrong-one", "next": "/account"})
    page = c.get("/account").get_data(as_text=True)
    assert 'id="new-token"' not in page and "wrong email or password" in page


def png(w=800, h=600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), "teal").save(out, "PNG")
    return out.getvalue()


def test_preview_of_an_image_shows_its_thumbnail_cached_with_an_etag(web):
    app, d, u = web
    node = d.put(u["bob"].id, u["bob"].root_id, "<pic>.png", io.BytesIO(png())).node
    c = signed_in(app)
    page = c.get(f"/preview/{node.id}").get_data(as_text=True)
    assert f'src="/thumb/{node.id}"' in page and "&lt;pic&gt;.png" in page
    assert f'href="/download/{node.id}"' in page  # the web app's download route
    r = c.get(f"/thumb/{node.id}")
    assert r.status_code == 200 and r.mimetype == "image/webp"
    assert "private" in r.headers["Cache-Control"] and r.headers["X-Content-Type-Options"] == "nosniff"
    assert max(Image.open(io.BytesIO(r.data)).size) == 256
    assert list((d.config.home / "thumbs" / str(u["bob"].id)).rglob("*.webp"))  # the owner's cache only
    again = c.get(f"/thumb/{node.id}", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    # another user's file is not theirs to see
    ann = signed_in(app, "ann@example.com", "password-ann")
    assert ann.get(f"/thumb/{node.id}").status_code == 404
    # the same picture of another owner is decoded for its owner's cache, never served from bob's
    hers = d.put(u["ann"].id, u["ann"].root_id, "same.png", io.BytesIO(png())).node
    assert not (d.config.home / "thumbs" / str(u["ann"].id)).exists()
    assert ann.get(f"/thumb/{hers.id}").data == r.data
    assert list((d.config.home / "thumbs" / str(u["ann"].id)).rglob("*.webp"))


def test_a_non_image_with_an_image_name_gets_the_generic_icon(web):
    app, d, u = web
    node = d.put(u["bob"].id, u["bob"].root_id, "fake.jpg", io.BytesIO(b"<svg onload=alert(1)>")).node
    c = signed_in(app)
    r = c.get(f"/thumb/{node.id}")
    assert r.status_code == 303 and r.headers["Location"].endswith("/static/web/image.svg")
    assert list((d.config.home / "thumbs").rglob("*.none"))


def test_text_preview_is_plain_sandboxed_and_capped(web):
    app, d, u = web
    app.config["BLOCKDRIVE"]["web"]["preview_text_bytes"] = 10
    node = d.put(u["bob"].id, u["bob"].root_id, "notes.md", io.BytesIO(b"<script>alert(1)</script>")).node
    c = signed_in(app)
    page = c.get(f"/preview/{node.id}").get_data(as_text=True)
    assert re.search(rf'<iframe class="text-frame" sandbox [^>]*src="/preview/{node.id}/content"', page)
    r = c.get(f"/preview/{node.id}/content")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.data == b"<script>al"  # the first 10 bytes, as text


def test_html_svg_and_other_files_are_never_served_inline(web):
    app, d, u = web
    c = signed_in(app)
    for name in ("page.html", "logo.svg", "report.pdf", "data.bin"):
        node = d.put(u["bob"].id, u["bob"].root_id, name, io.BytesIO(b"<html><script>x</script>")).node
        page = c.get(f"/preview/{node.id}").get_data(as_text=True)
        assert "<iframe" not in page and "Download" in page and "No preview" in page
        r = c.get(f"/preview/{node.id}/content")
        assert r.status_code == 404 and r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Content-Security-Policy"] == FRAME_CSP and b"<html>" not in r.data


def test_preview_of_someone_elses_file_is_an_html_404(web):
    app, d, u = web
    node = d.put(u["ann"].id, u["ann"].root_id, "<secret>.txt", io.BytesIO(b"hers")).node
    r = signed_in(app).get(f"/preview/{node.id}")
    assert r.status_code == 404 and r.mimetype == "text/html" and "&lt;secret&gt;" not in r.get_data(as_text=True)
    assert signed_in(app).get(f"/preview/{node.id}/content").status_code == 404


def test_preview_of_a_folder_goes_to_the_folder(web):
    app, d, u = web
    folder = d.mkdir(u["bob"].id, u["bob"].root_id, "docs")
    r = signed_in(app).get(f"/preview/{folder.id}")
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/f/{folder.id}")


def test_an_unreadable_image_gets_the_icon_and_is_tried_again_later(web, monkeypatch):
    from storage.errors import IntegrityError
    app, d, u = web
    node = d.put(u["bob"].id, u["bob"].root_id, "lost.png", io.BytesIO(png())).node
    c = signed_in(app)

    def broken(*args, **kwargs):
        raise IntegrityError("a block is missing")
    monkeypatch.setattr(d, "open", broken)
    r = c.get(f"/thumb/{node.id}")
    assert r.status_code == 303 and r.headers["Location"].endswith("/static/web/image.svg")
    monkeypatch.undo()
    assert c.get(f"/thumb/{node.id}").mimetype == "image/webp"  # the failure was not cached
