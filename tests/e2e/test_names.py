"""Names through the real server (SQLite and MariaDB): the NFC and NFD spellings of a name are
one name at every door (upload, resolve, search, batch commit, tus, WebDAV), and a folder
refuses a second name equal to one it holds under case folding, with a 409 that says so."""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from urllib.parse import quote, urlparse

from .test_api import problem
from .test_dav import Dav

NFC = "caf\u00e9 cr\u00e8me.txt"
NFD = unicodedata.normalize("NFD", NFC)
EMPTY = hashlib.sha256(b"").hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}


def _names(c, folder: int) -> list[str]:
    return sorted(i["name"] for i in c.get(f"/api/v1/nodes/{folder}/children").json()["items"])


def test_the_api_stores_one_form_and_finds_it_from_either(server):
    a = server.user()
    assert NFC != NFD
    first = a.upload(a.root, quote(NFC), b"one")
    assert first.status_code == 201 and first.json()["name"] == NFC
    again = a.upload(a.root, quote(NFD), b"two")  # the same file: a new version
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert _names(a, a.root) == [NFC]
    assert a.get("/api/v1/resolve", params={"path": "/" + NFD}).json()["id"] == first.json()["id"]
    hits = a.get("/api/v1/search", params={"q": unicodedata.normalize("NFD", "cr\u00e8me")}).json()["items"]
    assert [h["id"] for h in hits] == [first.json()["id"]]
    # a batch commit and a tus upload named in NFD land on the same name
    r = a.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": a.root, "name": unicodedata.normalize("NFD", "\u00e9t\u00e9.txt"), "blocks": [], "size": 0,
         "sha256": EMPTY}]})
    assert r.json()["results"][0]["ok"]["name"] == "\u00e9t\u00e9.txt"
    meta = "filename " + base64.b64encode(NFD.encode()).decode()
    r = a.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "3", "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    r = a.patch(urlparse(r.headers["Location"]).path, data=b"tri",
                headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    assert _names(a, a.root) == sorted([NFC, "\u00e9t\u00e9.txt"])
    assert a.get(f"/api/v1/nodes/{first.json()['id']}/content").content == b"tri"


def test_the_api_refuses_names_that_differ_only_in_case(server):
    a = server.user()
    f = a.upload(a.root, "Report.txt", b"a").json()
    body = problem(a.upload(a.root, "report.TXT", b"b"), 409, "conflict")
    assert "only in case" in body["detail"] and body["clashes_with"] == "Report.txt"
    problem(a.post(f"/api/v1/nodes/{a.root}/children", json={"name": "REPORT.txt", "kind": "folder"}), 409)
    other = a.mkdir(a.root, "Other")
    problem(a.patch(f"/api/v1/nodes/{other['id']}", json={"name": "report.txt"}), 409)
    # a rename that changes only the case of its own name is allowed
    r = a.patch(f"/api/v1/nodes/{f['id']}", json={"name": "REPORT.txt"})
    assert r.status_code == 200 and r.json()["name"] == "REPORT.txt"
    r = a.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": a.root, "name": n, "blocks": [], "size": 0, "sha256": EMPTY} for n in ("new", "NEW", "other")]})
    res = r.json()["results"]
    assert "ok" in res[0] and res[1]["error"]["code"] == "conflict" and res[2]["error"]["clashes_with"] == "Other"
    r = a.post("/api/v1/batch/folders", json={"folders": [{"parent_id": a.root, "name": "OTHER"}]})
    assert r.json()["results"][0]["error"]["code"] == "conflict"
    meta = "filename " + base64.b64encode(b"report.txt").decode()
    problem(a.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "1", "Upload-Metadata": meta}), 409)
    assert _names(a, a.root) == ["Other", "REPORT.txt", "new"]


def test_webdav_paths_in_either_form_and_case_twins(server):
    a = server.user()
    dav = Dav(server, a)
    assert dav("MKCOL", "/R\u00e9sum\u00e9s").status_code == 201
    folder = unicodedata.normalize("NFD", "/R\u00e9sum\u00e9s")
    assert dav("PUT", f"{folder}/{NFD}", data=b"v1").status_code == 201
    assert dav("PUT", f"/R\u00e9sum\u00e9s/{NFC}", data=b"v2").status_code == 204  # an overwrite
    assert dav("GET", f"{folder}/{NFD}").content == b"v2"
    assert list(dav.props(f"{folder}/", "1")) and len(dav.props(f"/R\u00e9sum\u00e9s/{NFC}")) == 1
    # a case twin is refused; a MOVE that changes only the case of the same node is not
    assert dav("PUT", "/R\u00e9sum\u00e9s/" + NFC.upper(), data=b"x").status_code == 409
    assert dav("MKCOL", "/r\u00e9sum\u00e9s").status_code == 409
    r = dav("MOVE", f"/R\u00e9sum\u00e9s/{NFC}",
            headers={"Destination": dav.base + quote("/R\u00e9sum\u00e9s/" + NFC.upper())})
    assert r.status_code in (201, 204), r.text
    folder_id = a.get("/api/v1/resolve", params={"path": "/R\u00e9sum\u00e9s"}).json()["id"]
    assert _names(a, folder_id) == [NFC.upper()]
