"""The web app's files pages through the Flask test client: the listing (escaping, sorting,
paging), every form (each checked against what the drive then holds), CSRF, another user's
folder, versions, the trash and a folder's streamed zip."""

from __future__ import annotations

import io
import re
import zipfile

from flask import url_for

from tests.unit.webapi.web_support import page_csrf, sign_in


def signed_in(app, who="bob"):
    c = app.test_client()
    sign_in(c, f"{who}@example.com", f"password-{who}")
    return c


def put(d, user, parent, name, data=b"x"):
    return d.put(user.id, parent, name, io.BytesIO(data)).node


def names(c, folder_id):
    """The names in a folder as the JSON API shows them to ``c``'s session."""
    return [n["name"] for n in c.get(f"/api/v1/nodes/{folder_id}/children?limit=1000").get_json()["items"]]


def trash_ids(c):
    return [n["id"] for n in c.get("/api/v1/trash").get_json()["items"]]


def rows(body: str) -> list[str]:
    return re.findall(r'<tr data-id="(\d+)"', body)


def test_listing_escapes_names_and_links_files_to_their_download(web):
    app, d, u = web
    bob = u["bob"]
    f = put(d, bob, bob.root_id, '<script>alert("x")<script>.exe')
    sub = d.mkdir(bob.id, bob.root_id, "<i>sub<i>")
    body = signed_in(app).get(f"/f/{bob.root_id}").get_data(as_text=True)
    assert "<script>alert" not in body and "&lt;script&gt;alert(&#34;x&#34;)&lt;script&gt;.exe" in body
    assert "<i>sub<i>" not in body and "&lt;i&gt;sub&lt;i&gt;/" in body
    assert f'href="/download/{f.id}"' in body and f'href="/f/{sub.id}"' in body
    assert "<img" not in body  # no thumbnail endpoint, so no thumbnail


def test_breadcrumbs_start_at_my_files(web):
    app, d, u = web
    bob = u["bob"]
    a = d.mkdir(bob.id, bob.root_id, "alpha")
    b = d.mkdir(bob.id, a.id, "beta")
    body = signed_in(app).get(f"/f/{b.id}").get_data(as_text=True)
    crumbs = body.split('class="crumbs"')[1].split("</nav>")[0]
    assert re.findall(r">([^<>]+)</(?:a|span)>", crumbs) == ["My files", "alpha", "beta"]
    assert f'href="/f/{bob.root_id}"' in crumbs and f'href="/f/{a.id}"' in crumbs


def test_sort_by_size_descending_and_the_headers_link_the_other_order(web):
    app, d, u = web
    bob = u["bob"]
    ids = {n: put(d, bob, bob.root_id, n, b"x" * size).id for n, size in [("a", 3), ("b", 1), ("c", 2)]}
    c = signed_in(app)
    body = c.get(f"/f/{bob.root_id}?sort=size&order=desc").get_data(as_text=True)
    assert rows(body) == [str(ids["a"]), str(ids["c"]), str(ids["b"])]
    assert f'href="/f/{bob.root_id}?sort=size&amp;order=asc"' in body  # the active column flips
    body = c.get(f"/f/{bob.root_id}?sort=name").get_data(as_text=True)
    assert rows(body) == [str(ids["a"]), str(ids["b"]), str(ids["c"])]
    assert c.get(f"/f/{bob.root_id}?sort=colour").status_code == 400


def test_paging_follows_the_cursor_100_at_a_time(web):
    app, d, u = web
    bob = u["bob"]
    folder = d.mkdir(bob.id, bob.root_id, "many")
    for i in range(150):
        d.mkdir(bob.id, folder.id, f"d{i:03d}")
    c = signed_in(app)
    first = c.get(f"/f/{folder.id}").get_data(as_text=True)
    assert len(rows(first)) == 100 and "d099/" in first and "d100/" not in first
    nxt = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = c.get(nxt).get_data(as_text=True)
    assert len(rows(second)) == 50 and "d100/" in second and "d149/" in second and "d099/" not in second
    assert 'rel="next"' not in second and "First page" in second
    for bad in (f"/f/{folder.id}?cursor=bogus", "/?cursor=bogus"):
        r = c.get(bad)
        assert r.status_code == 400 and r.mimetype == "text/html" and "invalid cursor" in r.get_data(as_text=True)


def test_new_folder_rename_and_delete_forms(web):
    app, d, u = web
    bob = u["bob"]
    c = signed_in(app)
    token = page_csrf(c)
    r = c.post(f"/f/{bob.root_id}/folders", data={"csrf": token, "name": "Reports"})
    assert r.status_code == 303
    (rep,) = d.list_children(bob.id, bob.root_id)[0]
    assert rep.name == "Reports" and rep.kind == "folder" and r.headers["Location"] == f"/f/{rep.id}"
    here = f"/f/{bob.root_id}"
    r = c.post(f"/n/{rep.id}/rename", data={"csrf": token, "name": "Reports 2026", "next": here})
    assert r.status_code == 303 and r.headers["Location"] == here
    assert c.get(f"/api/v1/nodes/{rep.id}").get_json()["name"] == "Reports 2026"
    r = c.post(f"/n/{rep.id}/delete", data={"csrf": token, "next": here})
    assert r.status_code == 303 and names(c, bob.root_id) == []
    assert trash_ids(c) == [rep.id]


def test_a_refused_form_shows_the_storage_message(web):
    app, d, u = web
    bob = u["bob"]
    d.mkdir(bob.id, bob.root_id, "taken")
    c = signed_in(app)
    here = f"/f/{bob.root_id}"
    r = c.post(f"/f/{bob.root_id}/folders", data={"csrf": page_csrf(c), "name": "taken", "next": here})
    assert r.status_code == 303 and r.headers["Location"] == here
    assert "&#39;taken&#39; already exists in this folder" in c.get(here).get_data(as_text=True)


def test_forms_without_csrf_are_refused_and_change_nothing(web):
    app, d, u = web
    bob = u["bob"]
    f = put(d, bob, bob.root_id, "keep.txt")
    c = signed_in(app)
    assert c.post(f"/n/{f.id}/delete", data={}).status_code == 403
    assert c.post(f"/f/{bob.root_id}/folders", data={"name": "x", "csrf": "wrong"}).status_code == 403
    assert c.post("/trash/empty", data={"confirm": "yes"}).status_code == 403
    assert names(c, bob.root_id) == ["keep.txt"]


def test_another_users_folder_is_a_404_page(web):
    app, d, u = web
    ann = u["ann"]
    secret = d.mkdir(ann.id, ann.root_id, "secret")
    c = signed_in(app, "bob")
    for path in (f"/f/{secret.id}", f"/f/{ann.root_id}", f"/download/{secret.id}.zip", f"/versions/{secret.id}"):
        r = c.get(path)
        assert r.status_code == 404 and r.mimetype == "text/html", path
        assert "not found" in r.get_data(as_text=True)
    token = page_csrf(c)
    r = c.post(f"/n/{secret.id}/delete", data={"csrf": token, "next": "/"})
    assert r.status_code == 303 and [n.name for n in d.list_children(ann.id, ann.root_id)[0]] == ["secret"]


def test_signed_out_pages_go_to_the_signin_form(web):
    app, _d, u = web
    r = app.test_client().get(f"/f/{u['bob'].root_id}")
    assert r.status_code == 303 and r.headers["Location"].startswith("/?next=")


def test_selection_moves_through_the_folder_picker_and_copies(web):
    app, d, u = web
    bob = u["bob"]
    dest = d.mkdir(bob.id, bob.root_id, "dest")
    a, b = put(d, bob, bob.root_id, "a.txt", b"AA"), put(d, bob, bob.root_id, "b.txt", b"BB")
    c = signed_in(app)
    token = page_csrf(c)
    r = c.post("/selection", data={"csrf": token, "action": "move", "ids": [a.id, b.id], "at": bob.root_id,
                                   "next": f"/f/{bob.root_id}"})
    assert r.status_code == 303 and r.headers["Location"].startswith("/move?")
    picker = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "a.txt" in picker and "b.txt" in picker and f"at={dest.id}" in picker
    inside = c.get(f"/move?op=move&ids={a.id}&ids={b.id}&at={dest.id}").get_data(as_text=True)
    assert f'name="dest" value="{dest.id}"' in inside
    hostile = c.get(f"/move?op=move&ids={a.id}&next=javascript:alert(1)").get_data(as_text=True)
    assert "javascript:" not in hostile and f'href="/f/{bob.root_id}">Cancel' in hostile
    r = c.post("/move", data={"csrf": token, "op": "move", "dest": dest.id, "ids": [a.id, b.id]})
    assert r.status_code == 303 and r.headers["Location"] == f"/f/{dest.id}"
    assert names(c, dest.id) == ["a.txt", "b.txt"] and names(c, bob.root_id) == ["dest"]
    r = c.post("/move", data={"csrf": token, "op": "copy", "dest": bob.root_id, "ids": [a.id]})
    assert r.status_code == 303 and names(c, bob.root_id) == ["a.txt", "dest"]
    assert names(c, dest.id) == ["a.txt", "b.txt"]


def test_selection_deletes_every_selected_item(web):
    app, d, u = web
    bob = u["bob"]
    ids = [put(d, bob, bob.root_id, n).id for n in ("x", "y", "z")]
    c = signed_in(app)
    r = c.post("/selection", data={"csrf": page_csrf(c), "action": "delete", "ids": ids[:2],
                                   "next": f"/f/{bob.root_id}"})
    assert r.status_code == 303 and names(c, bob.root_id) == ["z"]
    assert sorted(trash_ids(c)) == sorted(ids[:2])


def test_trash_restore_purge_and_empty_with_confirmation(web):
    app, d, u = web
    bob = u["bob"]
    ids = {n: put(d, bob, bob.root_id, n).id for n in ("one", "two", "three")}
    for node_id in ids.values():
        d.delete(bob.id, node_id)
    c = signed_in(app)
    token = page_csrf(c)
    body = c.get("/trash").get_data(as_text=True)
    assert all(n in body for n in ids)
    r = c.post(f"/trash/{ids['one']}/restore", data={"csrf": token})
    assert r.status_code == 303 and names(c, bob.root_id) == ["one"]
    c.post(f"/trash/{ids['two']}/purge", data={"csrf": token})
    assert trash_ids(c) == [ids["three"]]
    r = c.post("/trash/empty", data={"csrf": token, "next": "/trash"})
    assert r.status_code == 303 and trash_ids(c) == [ids["three"]]  # not confirmed
    assert "tick the box" in c.get("/trash").get_data(as_text=True)
    c.post("/trash/empty", data={"csrf": token, "confirm": "yes"})
    assert trash_ids(c) == []
    assert "The trash is empty." in c.get("/trash").get_data(as_text=True)


def test_versions_page_lists_downloads_and_restores(web):
    app, d, u = web
    bob = u["bob"]
    f = put(d, bob, bob.root_id, "notes.txt", b"first")
    d.put(bob.id, bob.root_id, "notes.txt", io.BytesIO(b"second!"))
    old, new = sorted(v.id for v in d.versions(bob.id, f.id))
    c = signed_in(app)
    body = c.get(f"/versions/{f.id}").get_data(as_text=True)
    assert "(current)" in body and f"/versions/{f.id}/{old}/restore" in body
    assert f"/versions/{f.id}/{new}/restore" not in body  # the current one has nothing to restore
    assert c.get(f"/download/{f.id}?version={old}").data == b"first"
    r = c.post(f"/versions/{f.id}/{old}/restore", data={"csrf": page_csrf(c)})
    assert r.status_code == 303 and r.headers["Location"] == f"/versions/{f.id}"
    assert c.get(f"/api/v1/nodes/{f.id}/content").data == b"first"
    assert len(c.get(f"/api/v1/nodes/{f.id}/versions").get_json()["items"]) == 3


def test_download_sends_the_file_as_an_attachment(web):
    app, d, u = web
    bob = u["bob"]
    f = put(d, bob, bob.root_id, "<b>.html", b"<b>bold</b>")
    r = signed_in(app).get(f"/download/{f.id}")
    assert r.status_code == 200 and r.data == b"<b>bold</b>"
    assert r.headers["Content-Disposition"].startswith("attachment;") and r.mimetype == "application/octet-stream"


def test_folder_zip_has_the_trees_names_and_bytes(web):
    app, d, u = web
    bob = u["bob"]
    top = d.mkdir(bob.id, bob.root_id, "top")
    sub = d.mkdir(bob.id, top.id, "sub dir")
    d.mkdir(bob.id, top.id, "empty")
    big = bytes(range(256)) * 5000
    put(d, bob, top.id, "a.txt", b"alpha")
    put(d, bob, sub.id, "ünï.bin", big)
    put(d, bob, bob.root_id, "outside.txt", b"no")
    d.delete(bob.id, put(d, bob, top.id, "gone.txt", b"trashed").id)
    c = signed_in(app)
    assert c.get(f"/download/{top.id}").headers["Location"] == f"/download/{top.id}.zip"
    r = c.get(f"/download/{top.id}.zip")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="top.zip"')
    assert "Content-Length" not in r.headers  # streamed as it is written
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    assert sorted(zf.namelist()) == ["a.txt", "empty/", "sub dir/", "sub dir/ünï.bin"]
    assert zf.read("a.txt") == b"alpha" and zf.read("sub dir/ünï.bin") == big
    assert zf.testzip() is None
    assert all(i.flag_bits & 0x08 for i in zf.infolist() if not i.is_dir())  # data descriptors: no seeking


def test_zip_of_a_file_is_refused_and_the_api_still_answers(web):
    app, d, u = web
    bob = u["bob"]
    f = put(d, bob, bob.root_id, "f.txt")
    c = signed_in(app)
    assert c.get(f"/download/{f.id}.zip").status_code == 400
    assert c.get(f"/api/v1/nodes/{f.id}/content").data == b"x"
    assert c.get(f"/download/{10**9}").status_code == 404


def test_the_folder_page_and_its_own_files_weigh_under_200_kb(web):
    app, d, u = web
    bob = u["bob"]
    for i in range(3):
        put(d, bob, bob.root_id, f"file {i}.txt")
    c = signed_in(app)
    r = c.get(f"/f/{bob.root_id}")
    body = r.get_data(as_text=True)
    linked = re.findall(r'(?:src|href)="(/static/[^"]+)"', body)
    assert "/static/vendor/tus-js-client/tus.min.js" in linked and "/static/web/upload.js" in linked
    total = len(r.data) + sum(len(c.get(path).data) for path in linked)
    assert total < 200_000, total


def test_preview_thumbnail_and_share_links_appear_once_their_pages_exist(web):
    app, d, u = web
    bob = u["bob"]
    for endpoint, rule in [("web.preview", "/p/<int:node_id>"), ("web.thumbnail", "/t/<int:node_id>"),
                           ("web.share", "/s/<int:node_id>")]:
        if endpoint not in app.view_functions:
            app.add_url_rule(rule, endpoint=endpoint, view_func=lambda node_id: "")
    img, txt = put(d, bob, bob.root_id, "cat.JPG"), put(d, bob, bob.root_id, "cat.txt")
    body = signed_in(app).get(f"/f/{bob.root_id}").get_data(as_text=True)
    with app.test_request_context():
        p, t, s = (lambda n, e=e: url_for(e, node_id=n) for e in ("web.preview", "web.thumbnail", "web.share"))
        assert f'href="{p(img.id)}"' in body and f'href="{p(txt.id)}"' in body
        assert f'src="{t(img.id)}"' in body and f'src="{t(txt.id)}"' not in body
        assert 'loading="lazy"' in body and f'href="{s(txt.id)}"' in body
