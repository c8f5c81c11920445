"""WebDAV through the real server (gunicorn, two workers) on SQLite and MariaDB: signing in,
reading and writing, the tree operations, shares, quotas, cut-off bodies, listings, and the
Nextcloud spellings of the mount. The real clients (litmus, rclone, cadaver, davfs2,
nextcloudcmd) have their own test files."""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from storage.config import load_config
from storage.drive import Drive
from storage.models import TrafficDaily

from harness.server import http_session

from .conftest import served
from .test_edge_cutoff import send_cut

OC = "http://owncloud.org/ns"
PROPS = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
         "<d:getetag/><d:getlastmodified/><d:getcontentlength/><d:resourcetype/><oc:fileid/><oc:permissions/>"
         "<oc:checksums/><oc:size/></d:prop></d:propfind>")


class Dav:
    """WebDAV calls as one user, signed in with Basic credentials."""

    def __init__(self, server, user, secret: str | None = None, mount: str = "/dav"):
        self.server, self.user = server, user
        self.s = http_session()
        self.s.auth = (user.email, secret or user.token)
        self.base = server.url + mount

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, self.base + quote(path), timeout=120, **kw)

    def props(self, path: str, depth: str = "0") -> dict[str, dict]:
        """{href: {prop tag: text or element}} of a PROPFIND (the 200 propstats only)."""
        r = self("PROPFIND", path, headers={"Depth": depth}, data=PROPS)
        assert r.status_code == 207, r.text
        out = {}
        for resp in ET.fromstring(r.content).iter("{DAV:}response"):
            href = resp.find("{DAV:}href").text
            found = {}
            for ps in resp.iter("{DAV:}propstat"):
                if "200" in ps.find("{DAV:}status").text:
                    for p in ps.find("{DAV:}prop"):
                        found[p.tag] = p.text if len(p) == 0 else p
            out[href] = found
        return out

    def prop(self, path: str, tag: str):
        return next(iter(self.props(path).values())).get(tag)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "dav") as srv:
        yield srv


def used(user) -> int:
    return user.get("/api/v1/account").json()["used_bytes"]


def node_at(user, path: str) -> dict | None:
    r = user.get("/api/v1/resolve", params={"path": path})
    return r.json() if r.status_code == 200 else None


def test_anonymous_and_wrong_credentials_get_a_basic_challenge(server):
    a = server.user()
    for auth in (None, (a.email, "wrong-password"), ("nobody@example.com", "password123")):
        r = requests.request("PROPFIND", server.url + "/dav/", auth=auth, headers={"Depth": "0"}, timeout=60)
        assert r.status_code == 401, (auth, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    # an app password works only with its own account's email
    b = server.user()
    r = requests.request("PROPFIND", server.url + "/dav/", auth=(a.email, b.token), headers={"Depth": "0"}, timeout=60)
    assert r.status_code == 401


def test_password_and_app_password_both_sign_in(server):
    a = server.user()
    for secret in ("password123", a.token):
        assert Dav(server, a, secret)("PROPFIND", "/", headers={"Depth": "0"}).status_code == 207


def test_put_get_range_head_and_new_versions(server):
    a = server.user()
    dav = Dav(server, a)
    v1, v2 = os.urandom(700_000), os.urandom(300_000)
    assert dav("PUT", "/doc.bin", data=v1).status_code == 201
    assert dav("PUT", "/doc.bin", data=v2).status_code == 204  # an overwrite is a new version
    node = node_at(a, "/doc.bin")
    assert len(a.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 2
    assert dav("GET", "/doc.bin").content == v2
    r = dav("GET", "/doc.bin", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == v2[1000:2000]
    head = dav("HEAD", "/doc.bin")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(v2)
    assert head.headers["ETag"] == f'"{hashlib.sha256(v2).hexdigest()}"'
    assert dav("GET", "/doc.bin", headers={"If-None-Match": head.headers["ETag"]}).status_code == 304
    # a 0-byte file
    assert dav("PUT", "/empty.txt", data=b"").status_code == 201
    assert dav("GET", "/empty.txt").content == b""
    assert node_at(a, "/empty.txt")["size"] == 0
    # Content-Range on PUT is refused and creates nothing
    r = dav("PUT", "/part.bin", data=b"abc", headers={"Content-Range": "bytes 0-2/10"})
    assert r.status_code == 400 and node_at(a, "/part.bin") is None
    # a PUT into a folder that does not exist
    assert dav("PUT", "/no/such/f.txt", data=b"x").status_code == 409


def test_mtime_checksums_etags_and_the_nextcloud_headers(server):
    a = server.user()
    dav = Dav(server, a)
    data = b"hello, mtime"
    r = dav("PUT", "/m.txt", data=data, headers={"X-OC-Mtime": "1500000000"})
    assert r.status_code == 201
    assert r.headers["X-OC-MTime"] == "accepted"
    node = node_at(a, "/m.txt")
    assert r.headers["OC-FileId"].startswith(f"{node['id']:08d}")
    sha = hashlib.sha256(data).hexdigest()
    assert r.headers["OC-ETag"] == f'"{sha}"'
    props = next(iter(dav.props("/m.txt").values()))
    assert parsedate_to_datetime(props["{DAV:}getlastmodified"]).timestamp() == 1500000000
    assert props["{DAV:}getetag"] == f'"{sha}"'
    assert props[f"{{{OC}}}fileid"] == str(node["id"])
    assert props[f"{{{OC}}}permissions"] == "RGDNVW"
    assert props[f"{{{OC}}}checksums"].find(f"{{{OC}}}checksum").text == f"SHA256:{sha}"
    # the same file through Nextcloud's spelling of the mount
    nc = Dav(server, a, mount=f"/remote.php/dav/files/{a.email}")
    assert nc("GET", "/m.txt").content == data
    assert Dav(server, a, mount="/remote.php/dav/files/someone-else@example.com")("GET", "/m.txt").status_code == 404
    assert dav("PUT", "/bad.txt", data=b"x", headers={"X-OC-Mtime": "soon"}).status_code == 400


def test_a_folders_etag_moves_when_anything_below_it_changes(server):
    a = server.user()
    dav = Dav(server, a)
    for folder in ("/a", "/a/b", "/a/b/c", "/other"):
        assert dav("MKCOL", folder).status_code == 201
    etag = {p: dav.prop(p, "{DAV:}getetag") for p in ("/", "/a", "/a/b", "/other")}
    assert dav("PUT", "/a/b/c/deep.txt", data=b"1").status_code == 201
    after = {p: dav.prop(p, "{DAV:}getetag") for p in etag}
    assert all(after[p] != etag[p] for p in ("/", "/a", "/a/b")), (etag, after)
    assert after["/other"] == etag["/other"]
    for change in (lambda: dav("PUT", "/a/b/c/deep.txt", data=b"2"),
                   lambda: dav("MOVE", "/a/b/c/deep.txt", headers={"Destination": dav.base + "/other/deep.txt"}),
                   lambda: dav("DELETE", "/other/deep.txt")):
        before = dav.prop("/", "{DAV:}getetag")
        assert change().status_code in (201, 204)
        assert dav.prop("/", "{DAV:}getetag") != before


def test_mkcol_delete_to_trash_copy_and_move_with_overwrite(server):
    a = server.user()
    dav = Dav(server, a)
    assert dav("MKCOL", "/d").status_code == 201
    assert dav("MKCOL", "/d").status_code == 405
    data = os.urandom(200_000)
    assert dav("PUT", "/d/f.bin", data=data).status_code == 201
    before = used(a)
    r = dav("COPY", "/d", headers={"Destination": dav.base + "/e"})
    assert r.status_code == 201
    assert dav("GET", "/e/f.bin").content == data
    assert node_at(a, "/e/f.bin")["etag"] == node_at(a, "/d/f.bin")["etag"]
    assert used(a) > before  # the copy is charged (its blocks are shared, not written again)
    assert dav("PUT", "/g.bin", data=b"other").status_code == 201
    r = dav("MOVE", "/d/f.bin", headers={"Destination": dav.base + "/g.bin", "Overwrite": "F"})
    assert r.status_code == 412
    r = dav("MOVE", "/d/f.bin", headers={"Destination": dav.base + "/g.bin", "Overwrite": "T"})
    assert r.status_code == 204
    assert dav("GET", "/g.bin").content == data and node_at(a, "/d/f.bin") is None
    trash = a.get("/api/v1/trash").json()["items"]
    assert [t["name"] for t in trash] == ["g.bin"]  # the overwritten file went to the trash
    assert dav("DELETE", "/e").status_code == 204
    assert node_at(a, "/e") is None
    assert {t["name"] for t in a.get("/api/v1/trash").json()["items"]} == {"g.bin", "e"}
    r = dav("MOVE", "/g.bin", headers={"Destination": "http://elsewhere.example/dav/g.bin"})
    assert r.status_code == 502


def test_shares_appear_under_shared_with_me_with_their_role(server):
    owner, viewer, editor = server.user(), server.user(), server.user()
    folder = owner.mkdir(owner.root, "Team")
    owner.upload(folder["id"], "plan.txt", b"the plan")
    for who, role in ((viewer, "viewer"), (editor, "editor")):
        r = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": who.email, "role": role})
        assert r.status_code == 201, r.text
    v, e = Dav(server, viewer), Dav(server, editor)
    listing = v.props("/Shared with me/", depth="1")
    assert any(h.rstrip("/").endswith("/Shared%20with%20me/Team") for h in listing), listing
    assert v("GET", "/Shared with me/Team/plan.txt").content == b"the plan"
    assert v.prop("/Shared with me/Team/plan.txt", f"{{{OC}}}permissions") == "SMG"
    assert v("PUT", "/Shared with me/Team/new.txt", data=b"no").status_code == 403
    assert v("DELETE", "/Shared with me/Team/plan.txt").status_code == 403
    assert e("PUT", "/Shared with me/Team/new.txt", data=b"yes").status_code == 201
    assert owner.get("/api/v1/resolve", params={"path": "/Team/new.txt"}).status_code == 200
    assert e("DELETE", "/Shared with me/Team").status_code == 403  # the share's root stays the owner's
    assert e("MKCOL", "/Shared with me/Mine").status_code == 403
    stranger = server.user()
    assert Dav(server, stranger)("GET", "/Shared with me/Team/plan.txt").status_code == 404


def test_cut_off_put_commits_nothing(server):
    a = server.user()
    auth = requests.auth._basic_auth_str(a.email, a.token)
    before = used(a)
    data = os.urandom(600_000)
    status, _ = send_cut(server, "PUT", "/dav/cut.bin", {"Authorization": auth}, data[:250_000], len(data))
    assert status in (None, 400), status
    assert node_at(a, "/cut.bin") is None and used(a) == before


def test_listings_stream_and_page_through_big_folders(server):
    a = server.user()
    dav = Dav(server, a)
    folder = a.mkdir(a.root, "big")
    names = [f"f{i:05d}" for i in range(1_150)]  # more than one page of the folder
    for i in range(0, len(names), 1000):
        r = a.post("/api/v1/batch/folders",
                   json={"folders": [{"parent_id": folder["id"], "name": n} for n in names[i:i + 1000]]})
        assert r.status_code == 200, r.text
    r = dav("PROPFIND", "/big/", headers={"Depth": "1"}, data=PROPS)
    assert r.status_code == 207 and "Content-Length" not in r.headers  # streamed, not built whole
    hrefs = re.findall(rb"<ns0:href>([^<]*)</ns0:href>", r.content)
    assert len(hrefs) == 1 + len(names)
    assert sorted(h.decode().rstrip("/").rsplit("/", 1)[-1] for h in hrefs[1:]) == names
    assert dav("PROPFIND", "/big/", headers={"Depth": "infinity"}).status_code == 403
    assert dav("PROPFIND", "/big/").status_code == 403  # no Depth means infinity


def test_put_over_quota_is_507_and_charges_nothing(request, tmp_path_factory):
    request.param = "sqlite"
    with served(request, tmp_path_factory, "davquota", {"BLOCKDRIVE_QUOTA_FREE_BYTES": "1000000"}) as srv:
        a = srv.user()
        dav = Dav(srv, a)
        assert dav("PUT", "/small.bin", data=os.urandom(100_000)).status_code == 201
        before = a.get("/api/v1/account").json()
        r = dav("PUT", "/big.bin", data=os.urandom(2_000_000))
        assert r.status_code == 507
        after = a.get("/api/v1/account").json()
        assert (after["used_bytes"], after["pending_bytes"]) == (before["used_bytes"], before["pending_bytes"])
        assert node_at(a, "/big.bin") is None
        # without a Content-Length the bytes are counted as they come, with the same answer
        r = dav("PUT", "/chunked.bin", data=iter([os.urandom(500_000) for _ in range(4)]))
        assert r.status_code == 507 and node_at(a, "/chunked.bin") is None


def test_locks_hold_across_workers_and_tokens_open_them(server):
    a = server.user()
    dav = Dav(server, a)
    assert dav("PUT", "/locked.txt", data=b"v1").status_code == 201
    body = ('<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope>'
            "<d:locktype><d:write/></d:locktype><d:owner>test</d:owner></d:lockinfo>")
    r = dav("LOCK", "/locked.txt", data=body, headers={"Timeout": "Second-600"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    token = r.headers["Lock-Token"].strip("<>")
    # each request may land on either worker: the lock is in the database, so all are refused
    for _ in range(8):
        assert dav("PUT", "/locked.txt", data=b"no").status_code == 423
        assert dav("DELETE", "/locked.txt").status_code == 423
        assert dav("LOCK", "/locked.txt", data=body).status_code == 423
    assert dav("PUT", "/locked.txt", data=b"v2", headers={"If": f"(<{token}>)"}).status_code == 204
    assert dav("UNLOCK", "/locked.txt", headers={"Lock-Token": f"<{token}>"}).status_code == 204
    assert dav("PUT", "/locked.txt", data=b"v3").status_code == 204
    assert dav("GET", "/locked.txt").content == b"v3"
    # dead properties are in the database too, and follow the file when it moves
    patch = ('<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:example"><d:set><d:prop>'
             "<x:colour>blue</x:colour></d:prop></d:set></d:propertyupdate>")
    assert dav("PROPPATCH", "/locked.txt", data=patch).status_code == 207
    assert dav("MOVE", "/locked.txt", headers={"Destination": dav.base + "/moved.txt"}).status_code == 201
    find = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:x="urn:example"><d:prop><x:colour/></d:prop>'
            "</d:propfind>")
    for _ in range(4):
        r = dav("PROPFIND", "/moved.txt", data=find, headers={"Depth": "0"})
        assert b"blue" in r.content


def test_if_headers_with_resource_tags_are_checked(server):
    a = server.user()
    dav = Dav(server, a)
    assert dav("PUT", "/t.txt", data=b"one").status_code == 201
    etag = dav("HEAD", "/t.txt").headers["ETag"]
    url = dav.base + "/t.txt"
    assert dav("PUT", "/t.txt", data=b"two", headers={"If": f'<{url}> (["wrong"])'}).status_code == 412
    assert dav("GET", "/t.txt").content == b"one"
    assert dav("PUT", "/t.txt", data=b"two", headers={"If": f"<{url}> ([{etag}])"}).status_code == 204
    assert dav("GET", "/t.txt").content == b"two"


def test_webdav_traffic_is_in_the_reports(server):
    a = server.user()
    dav = Dav(server, a)
    assert dav("PUT", "/traffic.bin", data=os.urandom(50_000)).status_code == 201
    assert dav("GET", "/traffic.bin").status_code == 200
    drive = Drive(load_config(env=server.env))
    try:
        with drive.engine.connect() as conn:
            row = conn.execute(sa.select(TrafficDaily.__table__).where(TrafficDaily.user_id == a.id)).one()
    finally:
        drive.close()
    assert (row.uploads, row.downloads, row.bytes_in, row.bytes_out) == (1, 1, 50_000, 50_000)


def test_webdav_requests_are_in_the_metrics(server):
    a = server.user()
    Dav(server, a)("PROPFIND", "/", headers={"Depth": "0"})
    text = requests.get(server.url + "/metrics", timeout=60).text
    assert re.search(r'blockdrive_http_requests_total\{endpoint="/dav/<path>",method="PROPFIND",status="207"\} [1-9]',
                     text), [line for line in text.splitlines() if "/dav" in line]
