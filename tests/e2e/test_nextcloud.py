"""The Nextcloud dialect over HTTP: /status.php, the OCS capabilities and user routes, and
chunked upload (/remote.php/dav/uploads/...) on the resumable upload sessions, with its
quota, abort and cut-off behaviour, as Nextcloud's clients drive it."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import socket
import subprocess
from pathlib import Path
from urllib.parse import quote, urlparse
from xml.etree import ElementTree as ET

import pytest
import requests

from storage.config import load_config
from storage.drive import Drive

from .conftest import ENGINES, require_tool, served

QUOTA = 20_000_000
DAV = "{DAV:}"


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "nextcloud", {"BLOCKDRIVE_QUOTA_FREE_BYTES": str(QUOTA)}) as srv:
        yield srv


def stored_mtime(server, nc, node_id: int) -> dt.datetime | None:
    """The modification time the server keeps for a file (the JSON API does not show it)."""
    drive = Drive(load_config(env=server.env))
    try:
        return drive.get(nc.api.id, node_id).mtime
    finally:
        drive.close()


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


class Nc:
    """One user as a Nextcloud client sees them: Basic auth with the email and an app password."""

    def __init__(self, server, user):
        self.api, self.email = user, user.email
        self.base = server.url
        self.s = requests.Session()
        self.s.auth = (user.email, user.token)
        self.uploads = f"/remote.php/dav/uploads/{quote(user.email)}"

    def req(self, method, path, **kw):
        return self.s.request(method, self.base + path, timeout=120, **kw)

    def dest(self, path: str) -> str:
        return f"{self.base}/remote.php/dav/files/{quote(self.email)}{quote(path)}"

    def account(self) -> dict:
        return self.api.get("/api/v1/account").json()

    def node(self, path: str):
        r = self.api.get("/api/v1/resolve", params={"path": path})
        return r.json() if r.status_code == 200 else None

    def chunks(self, transfer: str) -> list[tuple[str, int]]:
        r = self.req("PROPFIND", f"{self.uploads}/{transfer}", headers={"Depth": "1"})
        assert r.status_code == 207, r.text
        out = []
        for resp in ET.fromstring(r.content).findall(f"{DAV}response"):
            href = resp.find(f"{DAV}href").text
            length = resp.find(f".//{DAV}getcontentlength")
            if length is not None:
                out.append((href.rsplit("/", 1)[1], int(length.text)))
        return out


@pytest.fixture
def nc(server):
    return Nc(server, server.user())


def test_status_php_says_an_installed_nextcloud_28(server):
    r = requests.get(server.url + "/status.php", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"installed": True, "maintenance": False, "needsDbUpgrade": False, "version": "28.0.0.0",
                        "versionstring": "28.0.0", "edition": "", "productname": "blockdrive",
                        "extendedSupport": False}


def test_capabilities_json_and_xml_without_credentials(server):
    r = requests.get(server.url + "/ocs/v1.php/cloud/capabilities?format=json", timeout=30)
    assert r.status_code == 200
    ocs = r.json()["ocs"]
    assert ocs["meta"]["statuscode"] == 100 and ocs["meta"]["status"] == "ok"
    caps = ocs["data"]["capabilities"]
    assert caps["dav"]["chunking"] == "1.0" and "bulkupload" not in caps["dav"]
    assert caps["checksums"]["supportedTypes"] == ["SHA256"]
    assert caps["files"]["bigfilechunking"] is True and caps["files"]["undelete"] is True
    assert ocs["data"]["version"]["major"] == 28
    r = requests.get(server.url + "/ocs/v2.php/cloud/capabilities", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    assert root.findtext("meta/statuscode") == "200"
    assert root.findtext("data/capabilities/dav/chunking") == "1.0"
    assert root.findtext("data/capabilities/files/versioning") == "1"
    assert root.findtext("data/capabilities/checksums/supportedTypes/element") == "SHA256"


def test_ocs_user_needs_basic_and_tells_id_and_quota(server, nc):
    r = requests.get(server.url + "/ocs/v2.php/cloud/user?format=json", timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    r = requests.get(server.url + "/ocs/v1.php/cloud/user?format=json", auth=(nc.email, "wrong"), timeout=30)
    assert r.status_code == 401
    nc.api.upload(nc.api.root, "a.bin", data(100_000, 1))
    r = nc.req("GET", "/ocs/v1.php/cloud/user?format=json")
    assert r.status_code == 200, r.text
    user = r.json()["ocs"]["data"]
    assert user["id"] == nc.email and user["email"] == nc.email and user["display-name"] == nc.email
    used = nc.account()["used_bytes"]
    assert used >= 100_000
    assert user["quota"]["total"] == QUOTA and user["quota"]["used"] == used
    assert user["quota"]["free"] == QUOTA - used
    # the account password signs in too
    r = requests.get(server.url + "/ocs/v2.php/cloud/user", auth=(nc.email, "password123"), timeout=30)
    assert r.status_code == 200 and ET.fromstring(r.content).findtext("data/id") == nc.email


def test_unknown_ocs_routes_answer_an_ocs_404(nc):
    r = nc.req("GET", "/ocs/v2.php/apps/files_sharing/api/v1/shares?format=json")
    assert r.status_code == 404
    assert r.json()["ocs"]["meta"] == {**r.json()["ocs"]["meta"], "status": "failure", "statuscode": 404}
    r = nc.req("GET", "/ocs/v1.php/nothing/here")
    assert r.status_code == 404 and ET.fromstring(r.content).findtext("meta/statuscode") == "998"


def test_chunked_upload_v2_commits_only_on_move_and_reads_back_identical(server, nc):
    folder = nc.api.mkdir(nc.api.root, "docs")
    body = data(3_500_000, 2)
    parts = [body[:1_500_000], body[1_500_000:3_000_000], body[3_000_000:]]
    up = f"{nc.uploads}/web-123"
    r = nc.req("MKCOL", up, headers={"Destination": nc.dest("/docs/big file.bin"),
                                     "OC-Total-Length": str(len(body))})
    assert r.status_code == 201, r.text
    assert nc.account()["pending_bytes"] == len(body)  # the upload's length is reserved
    for n, part in enumerate(parts, start=1):
        r = nc.req("PUT", f"{up}/{n:05d}", data=part, headers={"OC-Total-Length": str(len(body))})
        assert r.status_code == 201, r.text
    assert nc.chunks("web-123") == [(f"{n:05d}", len(p)) for n, p in enumerate(parts, start=1)]
    assert nc.node("/docs/big file.bin") is None  # every byte arrived, nothing is committed yet
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": nc.dest("/docs/big file.bin"),
                                                "OC-Checksum": "SHA256:" + hashlib.sha256(body).hexdigest(),
                                                "X-OC-Mtime": "1600000000"})
    assert r.status_code == 201, r.text
    assert r.headers["X-OC-MTime"] == "accepted"
    node = nc.node("/docs/big file.bin")
    assert stored_mtime(server, nc, node["id"]) == dt.datetime(2020, 9, 13, 12, 26, 40)
    assert node["parent_id"] == folder["id"] and node["size"] == len(body)
    assert r.headers["OC-FileId"].startswith(f"{node['id']:08d}") and not r.headers["OC-FileId"].isdigit()
    assert r.headers["ETag"] == r.headers["OC-ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert nc.api.get(f"/api/v1/nodes/{node['id']}/content").content == body
    acct = nc.account()
    assert acct["pending_bytes"] == 0 and acct["used_bytes"] >= len(body)
    # the upload is gone once it became the file
    assert nc.req("PROPFIND", up, headers={"Depth": "1"}).status_code == 404


def test_older_client_upload_without_destination_makes_a_new_version_under_if(nc):
    first = data(600_000, 3)
    assert nc.api.upload(nc.api.root, "notes.txt", first).status_code == 201
    old_etag = hashlib.sha256(first).hexdigest()
    body = data(2_200_000, 4)
    up = f"{nc.uploads}/4242"
    assert nc.req("MKCOL", up, headers={"OC-Total-Length": str(len(body))}).status_code == 201
    for n, off in enumerate(range(0, len(body), 1_000_000)):  # 3.x clients number chunks from 0
        r = nc.req("PUT", f"{up}/{n:08d}", data=body[off:off + 1_000_000], headers={"OC-Chunk-Offset": str(off)})
        assert r.status_code == 201, r.text
    dest = nc.dest("/notes.txt")
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": dest, "If": f'<{dest}> (["{"0" * 64}"])'})
    assert r.status_code == 412, r.text  # someone else's edit since: nothing is overwritten
    assert nc.node("/notes.txt")["etag"] == old_etag
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": dest, "If": f'<{dest}> (["{old_etag}"])',
                                                "OC-Total-Length": str(len(body))})
    assert r.status_code == 204, r.text
    assert "X-OC-MTime" not in r.headers  # no X-OC-Mtime was sent
    node = nc.node("/notes.txt")
    assert node["etag"] == hashlib.sha256(body).hexdigest()
    assert len(nc.api.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 2
    assert nc.api.get(f"/api/v1/nodes/{node['id']}/content").content == body


def test_chunks_are_taken_in_increasing_order_once(nc):
    up = f"{nc.uploads}/order"
    assert nc.req("MKCOL", up, headers={"OC-Total-Length": "300"}).status_code == 201
    assert nc.req("PUT", f"{up}/00002", data=b"a" * 100).status_code == 201
    assert nc.req("PUT", f"{up}/00002", data=b"b" * 100).status_code == 409  # sent again
    assert nc.req("PUT", f"{up}/00001", data=b"c" * 100).status_code == 409  # out of order
    assert nc.req("PUT", f"{up}/10001", data=b"d" * 100).status_code == 400  # past chunk 10000
    assert nc.req("DELETE", f"{up}/00002").status_code == 403
    assert nc.chunks("order") == [("00002", 100)]
    assert nc.req("PUT", f"{up}/00007", data=b"e" * 300).status_code == 400  # past the total length
    assert nc.req("PUT", f"{up}/00007", data=b"e" * 200).status_code == 201
    # a finished upload whose checksum does not match its bytes commits nothing
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": nc.dest("/o.bin"), "OC-Checksum": "SHA256:" + "0" * 64})
    assert r.status_code == 422 and b"SHA-256" in r.content
    assert nc.node("/o.bin") is None
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": nc.dest("/o.bin")})
    assert r.status_code == 201
    assert nc.api.get(f"/api/v1/nodes/{nc.node('/o.bin')['id']}/content").content == b"a" * 100 + b"e" * 200


def test_a_cut_off_chunk_keeps_nothing_and_an_incomplete_upload_commits_nothing(server, nc):
    body = data(2_000_000, 5)
    up = f"{nc.uploads}/cut"
    assert nc.req("MKCOL", up, headers={"Destination": nc.dest("/cut.bin"),
                                        "OC-Total-Length": str(len(body))}).status_code == 201
    assert nc.req("PUT", f"{up}/00001", data=body[:1_000_000]).status_code == 201
    used = nc.account()["used_bytes"]
    u = urlparse(server.url)
    auth = requests.auth._basic_auth_str(nc.email, nc.api.token)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall((f"PUT {up}/00002 HTTP/1.1\r\nHost: {u.hostname}\r\nAuthorization: {auth}\r\n"
                   f"Content-Length: 1000000\r\n\r\n").encode() + body[1_000_000:1_400_000])
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(100)
    assert answer.startswith(b"HTTP/1.1 400"), answer  # the body ended early
    assert nc.chunks("cut") == [("00001", 1_000_000)]  # nothing of the cut chunk is kept
    r = nc.req("MOVE", f"{up}/.file", headers={"Destination": nc.dest("/cut.bin")})
    assert r.status_code == 400, r.text
    assert nc.node("/cut.bin") is None
    acct = nc.account()
    assert acct["used_bytes"] == used and acct["pending_bytes"] == len(body)
    # the client resumes from the listing and finishes
    assert nc.req("PUT", f"{up}/00002", data=body[1_000_000:]).status_code == 201
    assert nc.req("MOVE", f"{up}/.file", headers={"Destination": nc.dest("/cut.bin")}).status_code == 201
    assert nc.api.get(f"/api/v1/nodes/{nc.node('/cut.bin')['id']}/content").content == body


def test_an_upload_past_the_quota_is_507_and_charges_nothing(nc):
    before = nc.account()
    r = nc.req("MKCOL", f"{nc.uploads}/huge", headers={"Destination": nc.dest("/huge.bin"),
                                                        "OC-Total-Length": str(QUOTA + 1)})
    assert r.status_code == 507, r.text
    assert r.headers["Content-Type"].startswith("application/xml") and b"QuotaExceeded" in r.content
    after = nc.account()
    assert after["used_bytes"] == before["used_bytes"] and after["pending_bytes"] == 0
    assert nc.req("PROPFIND", f"{nc.uploads}/huge").status_code == 404


def test_delete_aborts_and_frees_the_reservation(nc):
    up = f"{nc.uploads}/gone"
    assert nc.req("MKCOL", up, headers={"OC-Total-Length": "5000000"}).status_code == 201
    assert nc.req("MKCOL", up, headers={"OC-Total-Length": "5000000"}).status_code == 405  # exists
    assert nc.req("PUT", f"{up}/00001", data=data(1_000_000, 6)).status_code == 201
    assert nc.account()["pending_bytes"] == 5_000_000
    assert nc.req("DELETE", up).status_code == 204
    acct = nc.account()
    assert acct["pending_bytes"] == 0 and acct["used_bytes"] == 0
    assert nc.req("PROPFIND", up).status_code == 404
    assert nc.req("PUT", f"{up}/00002", data=b"x").status_code == 404
    assert nc.req("DELETE", up).status_code == 404
    # the transfer id is free again for a new upload
    assert nc.req("MKCOL", up, headers={"OC-Total-Length": "10"}).status_code == 201
    assert nc.req("DELETE", up).status_code == 204


def test_other_users_uploads_are_out_of_reach(server, nc):
    other = Nc(server, server.user())
    assert nc.req("MKCOL", f"{nc.uploads}/mine", headers={"OC-Total-Length": "10"}).status_code == 201
    # their URL with my credentials, and my transfer id under their own URL
    assert nc.req("PROPFIND", f"{other.uploads}/mine").status_code == 403
    assert other.req("PROPFIND", f"{other.uploads}/mine").status_code == 404
    assert other.req("PUT", f"{other.uploads}/mine/00001", data=b"x").status_code == 404
    # a destination in another user's tree, or on another server, is not this mount's (RFC 4918: 502)
    assert nc.req("MKCOL", f"{nc.uploads}/theirs", headers={"OC-Total-Length": "1",
                                                           "Destination": other.dest("/x")}).status_code == 502
    elsewhere = "http://elsewhere.example" + urlparse(nc.dest("/x")).path
    assert nc.req("MKCOL", f"{nc.uploads}/theirs", headers={"OC-Total-Length": "1",
                                                           "Destination": elsewhere}).status_code == 502
    # a destination that is a folder
    nc.api.mkdir(nc.api.root, "folder")
    assert nc.req("MKCOL", f"{nc.uploads}/theirs", headers={"OC-Total-Length": "1",
                                                           "Destination": nc.dest("/folder")}).status_code == 409
    assert nc.req("DELETE", f"{nc.uploads}/mine").status_code == 204
    assert nc.account()["pending_bytes"] == 0


def test_uploads_into_a_folder_shared_with_me_follow_the_share_role(server, nc):
    owner = server.user()
    team = owner.mkdir(owner.root, "team")
    inner = owner.mkdir(team["id"], "inner")
    look = owner.mkdir(owner.root, "look")
    for folder, role in ((team, "editor"), (look, "viewer")):
        r = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": nc.email, "role": role})
        assert r.status_code in (200, 201), r.text
    body = data(300_000, 7)
    up = f"{nc.uploads}/shared"
    dest = nc.dest("/Shared with me/team/inner/s.bin")
    assert nc.req("MKCOL", up, headers={"Destination": dest, "OC-Total-Length": str(len(body))}).status_code == 201
    assert nc.req("PUT", f"{up}/00001", data=body).status_code == 201
    assert nc.req("MOVE", f"{up}/.file", headers={"Destination": dest}).status_code == 201
    node = owner.get("/api/v1/resolve", params={"path": "/team/inner/s.bin"}).json()
    assert node["parent_id"] == inner["id"] and owner.get(f"/api/v1/nodes/{node['id']}/content").content == body
    assert owner.get("/api/v1/account").json()["used_bytes"] >= len(body)  # the owner is charged
    # a viewer may not write, and a missing folder is a conflict
    r = nc.req("MKCOL", f"{nc.uploads}/view", headers={"Destination": nc.dest("/Shared with me/look/v.bin"),
                                                        "OC-Total-Length": "10"})
    assert r.status_code == 403, r.text
    r = nc.req("MKCOL", f"{nc.uploads}/miss", headers={"Destination": nc.dest("/Shared with me/team/no/x.bin"),
                                                        "OC-Total-Length": "10"})
    assert r.status_code == 409, r.text
    assert nc.account()["pending_bytes"] == 0


# ---- Nextcloud's own desktop client -----------------------------------------------------

class Desktop:
    """One local folder synced with the user's ``/sub`` by ``nextcloudcmd``, a run at a time."""

    def __init__(self, binary: str, server, nc: Nc, local: Path):
        self.binary, self.server, self.nc, self.local = binary, server, nc, local
        local.mkdir()
        self.home = local.parent / f"{local.name}-home"  # the client's own settings and logs
        self.home.mkdir()
        self.runs = 0

    def sync(self) -> str:
        self.runs += 1
        out = subprocess.run([self.binary, "--non-interactive", "-u", self.nc.email, "-p", self.nc.api.token,
                              "--path", "/sub", "--max-sync-retries", "1", str(self.local), self.server.url],
                             env={**os.environ, "HOME": str(self.home)}, capture_output=True, text=True,
                             timeout=600)
        log = out.stdout + out.stderr
        (self.home / f"run{self.runs}.log").write_text(log)
        assert out.returncode == 0, log[-4000:]
        return log

    def write(self, rel: str, content: bytes, mtime: int) -> None:
        path = self.local / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (mtime, mtime))  # a distinct mtime, so the edit is seen whatever the clock says

    def tree(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.local)): p.read_bytes() for p in sorted(self.local.rglob("*"))
                if p.is_file() and not p.name.startswith((".sync_", "._sync_", ".nextcloudsync"))}


def server_tree(nc: Nc, folder: int, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for item in nc.api.get(f"/api/v1/nodes/{folder}/children", params={"limit": 1000}).json()["items"]:
        if item["kind"] == "folder":
            out.update(server_tree(nc, item["id"], f"{prefix}{item['name']}/"))
        else:
            out[prefix + item["name"]] = nc.api.get(f"/api/v1/nodes/{item['id']}/content").content
    return out


def test_nextcloudcmd_syncs_two_folders_through_one_account(server, nc, tmp_path):
    binary = require_tool(("nextcloudcmd",), "Debian: apt-get install -y nextcloud-desktop-cmd")
    sub = nc.api.mkdir(nc.api.root, "sub")
    a, b = Desktop(binary, server, nc, tmp_path / "A"), Desktop(binary, server, nc, tmp_path / "B")
    big = data(12_500_000, 8)  # past the client's 10 MB chunk size: chunked upload
    a.write("a.txt", b"hello", 1_600_000_000)
    a.write("d/x.txt", b"x" * 1000, 1_600_000_000)
    a.write("big.bin", big, 1_600_000_000)
    log = a.sync()
    assert "/remote.php/dav/uploads/" in log and "PropagateUploadFileNG" in log
    assert server_tree(nc, sub["id"]) == a.tree()
    node = nc.node("/sub/big.bin")
    assert node["size"] == len(big) and node["etag"] == hashlib.sha256(big).hexdigest()
    assert stored_mtime(server, nc, node["id"]) == dt.datetime(2020, 9, 13, 12, 26, 40)
    b.sync()
    assert b.tree() == a.tree()
    assert (b.local / "big.bin").stat().st_mtime == 1_600_000_000

    # create, edit, rename, move and delete on both sides
    a.write("a.txt", b"hello, edited on A", 1_600_000_100)
    (a.local / "d" / "x.txt").rename(a.local / "d" / "y.txt")
    a.write("e.txt", b"new on A", 1_600_000_100)
    b.write("f/g.txt", b"new on B", 1_600_000_200)
    (b.local / "big.bin").unlink()
    # a rename is a MOVE on the server, not a new upload: the file's id and etag held
    assert '"d/y.txt" by OCC::PropagateRemoteMove' in a.sync()
    b.sync()
    (b.local / "e.txt").rename(b.local / "f" / "e.txt")
    b.write("f/g.txt", b"new on B, edited", 1_600_000_300)
    assert '"f/e.txt" by OCC::PropagateRemoteMove' in b.sync()
    assert '"f/e.txt" by OCC::PropagateLocalRename' in a.sync()
    want = {"a.txt": b"hello, edited on A", "d/y.txt": b"x" * 1000, "f/e.txt": b"new on A",
            "f/g.txt": b"new on B, edited"}
    assert a.tree() == b.tree() == server_tree(nc, sub["id"]) == want
    assert [t["name"] for t in nc.api.get("/api/v1/trash").json()["items"]].count("big.bin") == 1

    # both edit one file: the second to sync keeps its edit as a conflict copy, which the
    # server and then the other side get too
    a.write("a.txt", b"A's concurrent edit", 1_600_000_400)
    b.write("a.txt", b"B's concurrent edit, longer", 1_600_000_500)
    a.sync()
    b.sync()
    a.sync()
    final = server_tree(nc, sub["id"])
    assert a.tree() == b.tree() == final
    assert final["a.txt"] == b"A's concurrent edit"
    conflicts = [k for k in final if k.startswith("a (conflicted copy") and k.endswith(".txt")]
    assert len(conflicts) == 1 and final[conflicts[0]] == b"B's concurrent edit, longer"
