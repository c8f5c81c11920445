"""The authorization matrix: every resource kind (file, folder, version, share, link, tus
upload session, block session and block) x every operation x six callers, against the real
server on SQLite and on MariaDB.

Callers: the owner A; an editor and a viewer of A's shared folder; a stranger B with a drive
of their own; anonymous; a link holder (a public link's token, sent as a bearer token on the
API and in the URL of /s/...). Ids are also placed in bodies and nested paths: a move or copy
into someone else's folder, a share or link on someone else's folder, a version or link id of
another node under this one, a tus upload whose parent is someone else's folder, a commit of
blocks only another user has.

The server's convention (README, HTTP API): what the caller may not see is 404, what they see
but may not change is 403, no credentials is 401. Every forbidden case must be denied with
exactly that status, and listings must not show what the caller may not see. Mass assignment:
owner, size, quota and the like sent in every create/update body are rejected (400) and change
nothing, verified by reading back.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from urllib.parse import urlparse

import pytest

from tests.reliability import figures

from .conftest import Client

ROLES = ("owner", "editor", "viewer", "stranger", "anon", "link")
EMPTY = hashlib.sha256(b"").hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}
OK = "ok"  # a batch entry that landed

# Expected statuses in ROLES order, for the common shapes.
READ = (200, 200, 200, 404, 401, 401)             # anyone the folder is shared with reads
WRITE = (200, 200, 403, 404, 401, 401)            # owner and editor change, the viewer may not
CREATE = (201, 201, 403, 404, 401, 401)
OWNER_ONLY = (200, 403, 403, 404, 401, 401)       # shares and links: the owner manages them
PRIVATE = (200, 404, 404, 404, 401, 401)          # A's unshared folder: nobody else sees it
STRANGERS = (404, 404, 404, 201, 401, 401)        # B's own folder: only B


def _b64(s) -> str:
    return base64.b64encode(str(s).encode()).decode()


_seq = itertools.count()


def uniq(prefix="n") -> str:
    return f"{prefix}-{next(_seq)}-{os.urandom(2).hex()}"


def tus_meta(parent) -> dict:
    return {**TUS, "Upload-Length": "3", "Upload-Metadata": f"filename {_b64(uniq('t'))},parent_id {_b64(parent)}"}


def _batch_status(resp) -> int | str:
    """A batch answers 200 with one result per entry: the entry's own status."""
    if resp.status_code != 200:
        return resp.status_code
    (result,) = resp.json()["results"]
    if "ok" in result:
        return OK
    return {"forbidden": 403, "not-found": 404, "invalid-input": 400}.get(result["error"]["code"],
                                                                         result["error"]["code"])


# One row: (resource.operation, fresh objects needed, request(w, me) -> (method, path, kwargs),
# expected statuses in ROLES order (a tuple where several are right), optional
# leak(w, role, response) -> True if the answer shows what the role may not see, None where
# the rule does not apply to the role).
# ``me`` is the caller's own client (A's for anonymous and the link holder).
def rows():
    return [
        # ---- files ----
        ("file.get", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}", {}), READ),
        ("file.get-private", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['pf']}", {}), PRIVATE),
        ("file.download", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/content", {}), READ),
        ("file.download-private", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['pf']}/content", {}), PRIVATE),
        ("file.versions", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/versions", {}), READ),
        ("file.block-map", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/blocks", {}), READ),
        ("file.rename", True, lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nf']}", {"json": {"name": uniq()}}), WRITE),
        ("file.move-within-share", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nf']}", {"json": {"parent_id": w["sub"]}}), WRITE),
        ("file.move-into-B's-folder", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nf']}", {"json": {"parent_id": w["Bf"]}}),
         (404, 404, 403, 404, 401, 401)),
        ("file.move-into-A's-private-folder", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nf']}", {"json": {"parent_id": w["P"]}}),
         (200, 404, 403, 404, 401, 401)),
        ("file.move-into-caller's-root", True,  # across owners: a copy, never a move
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nf']}", {"json": {"parent_id": me.root}}),
         (200, 403, 403, 404, 401, 401)),
        ("file.copy-within-share", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/copy", {"json": {"parent_id": w["S"], "name": uniq()}}),
         CREATE),
        ("file.copy-into-caller's-root", False,  # whoever reads a file may keep a copy
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/copy", {"json": {"parent_id": me.root, "name": uniq()}}),
         (201, 201, 201, 404, 401, 401)),
        ("file.copy-into-B's-folder", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/copy", {"json": {"parent_id": w["Bf"], "name": uniq()}}),
         (404, 404, 404, 404, 401, 401)),
        ("file.copy-B's-file-into-share", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['bfile']}/copy", {"json": {"parent_id": w["S"], "name": uniq()}}),
         (404, 404, 404, 404, 401, 401)),
        ("file.delete", True, lambda w, me: ("DELETE", f"/api/v1/nodes/{w['nf']}", {}), WRITE),
        ("file.restore-from-trash", True, lambda w, me: ("POST", f"/api/v1/nodes/{w['nt']}/restore", {}), PRIVATE),
        ("file.new-version", False,
         lambda w, me: ("PUT", f"/api/v1/nodes/{w['S']}/children/f.txt", {"data": os.urandom(8)}), WRITE),
        ("file.upload-into-share", False,
         lambda w, me: ("PUT", f"/api/v1/nodes/{w['S']}/children/{uniq()}", {"data": b"x"}), CREATE),
        ("file.upload-into-A's-private-folder", False,
         lambda w, me: ("PUT", f"/api/v1/nodes/{w['P']}/children/{uniq()}", {"data": b"x"}),
         (201, 404, 404, 404, 401, 401)),
        ("file.upload-into-B's-folder", False,
         lambda w, me: ("PUT", f"/api/v1/nodes/{w['Bf']}/children/{uniq()}", {"data": b"x"}), STRANGERS),
        ("file.commit-into-share", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['S']}/children/{uniq()}/commit",
                        {"json": {"blocks": [], "size": 0, "sha256": EMPTY}}), CREATE),
        ("file.commit-into-B's-folder", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['Bf']}/children/{uniq()}/commit",
                        {"json": {"blocks": [], "size": 0, "sha256": EMPTY}}), STRANGERS),
        ("file.batch-commit-into-share", False,
         lambda w, me: ("POST", "/api/v1/batch/commit", {"json": {"files": [
             {"parent_id": w["S"], "name": uniq(), "blocks": [], "size": 0, "sha256": EMPTY}]}}),
         (OK, OK, 403, 404, 401, 401)),
        ("file.batch-commit-into-B's-folder", False,
         lambda w, me: ("POST", "/api/v1/batch/commit", {"json": {"files": [
             {"parent_id": w["Bf"], "name": uniq(), "blocks": [], "size": 0, "sha256": EMPTY}]}}),
         (404, 404, 404, OK, 401, 401)),
        # ---- folders ----
        ("folder.get", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['S']}", {}), READ),
        ("folder.children", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['S']}/children", {}), READ),
        ("folder.children-private", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['P']}/children", {}), PRIVATE),
        ("folder.tree", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['S']}/tree", {}), READ),
        ("folder.tree-private", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['P']}/tree", {}), PRIVATE),
        ("folder.mkdir", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['S']}/children", {"json": {"name": uniq()}}), CREATE),
        ("folder.mkdir-in-A's-private-folder", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['P']}/children", {"json": {"name": uniq()}}),
         (201, 404, 404, 404, 401, 401)),
        ("folder.mkdir-in-B's-folder", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['Bf']}/children", {"json": {"name": uniq()}}), STRANGERS),
        ("folder.batch-mkdir-in-share", False,
         lambda w, me: ("POST", "/api/v1/batch/folders", {"json": {"folders": [{"parent_id": w["S"], "name": uniq()}]}}),
         (OK, OK, 403, 404, 401, 401)),
        ("folder.batch-mkdir-in-B's-folder", False,
         lambda w, me: ("POST", "/api/v1/batch/folders", {"json": {"folders": [{"parent_id": w["Bf"], "name": uniq()}]}}),
         (404, 404, 404, OK, 401, 401)),
        ("folder.rename", True, lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nsub']}", {"json": {"name": uniq()}}), WRITE),
        ("folder.move-into-A's-private-folder", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nsub']}", {"json": {"parent_id": w["P"]}}),
         (200, 404, 403, 404, 401, 401)),
        ("folder.move-private-folder-into-share", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nP']}", {"json": {"parent_id": w["S"]}}),
         (200, 404, 404, 404, 401, 401)),
        ("folder.move-into-itself", True,
         lambda w, me: ("PATCH", f"/api/v1/nodes/{w['nsub']}", {"json": {"parent_id": w["nsub_child"]}}),
         (409, 409, 403, 404, 401, 401)),
        ("folder.delete", True, lambda w, me: ("DELETE", f"/api/v1/nodes/{w['nsub']}", {}), WRITE),
        ("folder.delete-root", False, lambda w, me: ("DELETE", f"/api/v1/nodes/{w['A_root']}", {}),
         (400, 404, 404, 404, 401, 401)),
        ("folder.resolve-A's-path", False,
         lambda w, me: ("GET", f"/api/v1/resolve?path=/{w['S_name']}/f.txt", {}), (200, 404, 404, 404, 401, 401)),
        ("folder.trash", False, lambda w, me: ("GET", "/api/v1/trash", {}), (200, 200, 200, 200, 401, 401),
         lambda w, role, r: None if role == "owner" else bool({n["id"] for n in r.json()["items"]} & w["A_trashed"])),
        ("folder.shared-with-me", False, lambda w, me: ("GET", "/api/v1/shared-with-me", {}),
         (200, 200, 200, 200, 401, 401),
         lambda w, role, r: None if role != "stranger" else bool({n["id"] for n in r.json()["items"]} & w["A_nodes"])),
        # ---- versions ----
        ("version.download-old", False,
         lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/content?version={w['vid']}", {}), READ),
        ("version.restore", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/versions/{w['vid']}/restore", {}), WRITE),
        ("version.restore-another-file's-version", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/versions/{w['pvid']}/restore", {}),
         (404, 404, 403, 404, 401, 401)),
        ("version.restore-B's-version", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['f']}/versions/{w['bvid']}/restore", {}),
         (404, 404, 403, 404, 401, 401)),
        ("version.download-another-file's-version", False,
         lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/content?version={w['pvid']}", {}),
         (404, 404, 404, 404, 401, 401)),
        ("version.block-map-of-B's-version", False,
         lambda w, me: ("GET", f"/api/v1/nodes/{w['f']}/blocks?version={w['bvid']}", {}),
         (404, 404, 404, 404, 401, 401)),
        # ---- shares ----
        ("share.list", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['S']}/shares", {}), OWNER_ONLY),
        ("share.grant", True,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['nsub']}/shares", {"json": {"email": w["T_email"], "role": "viewer"}}),
         (201, 403, 403, 404, 401, 401)),
        ("share.viewer-made-editor", True,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['nsub']}/shares",
                        {"json": {"email": w["V_email"], "role": "editor"}}), (201, 403, 403, 404, 401, 401)),
        ("share.grant-on-B's-folder", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{w['Bf']}/shares", {"json": {"email": w["T_email"], "role": "viewer"}}),
         (404, 404, 404, (200, 201), 401, 401)),
        ("share.revoke", True,
         lambda w, me: ("DELETE", f"/api/v1/nodes/{w['nsub']}/shares/{w['T_id']}", {}), (204, 403, 403, 404, 401, 401)),
        ("share.revoke-a-grant-of-another-node", False,
         lambda w, me: ("DELETE", f"/api/v1/nodes/{w['P']}/shares/{w['V_id']}", {}), (404, 404, 404, 404, 401, 401)),
        ("share.revoke-someone-not-shared", False,
         lambda w, me: ("DELETE", f"/api/v1/nodes/{w['S']}/shares/{w['B_id']}", {}), (404, 403, 403, 404, 401, 401)),
        # ---- public links ----
        ("link.list", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['S']}/links", {}), OWNER_ONLY),
        ("link.create", False, lambda w, me: ("POST", f"/api/v1/nodes/{w['S']}/links", {"json": {}}),
         (201, 403, 403, 404, 401, 401)),
        ("link.create-on-B's-folder", False, lambda w, me: ("POST", f"/api/v1/nodes/{w['Bf']}/links", {"json": {}}),
         STRANGERS),
        ("link.revoke", True, lambda w, me: ("DELETE", f"/api/v1/nodes/{w['S']}/links/{w['nl']}", {}),
         (204, 403, 403, 404, 401, 401)),
        ("link.revoke-another-node's-link", False,
         lambda w, me: ("DELETE", f"/api/v1/nodes/{w['S']}/links/{w['link_pf']}", {}), (404, 403, 403, 404, 401, 401)),
        ("link.revoke-B's-link-under-A's-folder", False,
         lambda w, me: ("DELETE", f"/api/v1/nodes/{w['S']}/links/{w['link_B']}", {}), (404, 403, 403, 404, 401, 401)),
        ("link.view", False, lambda w, me: ("GET", f"/s/{w['token']}", {}), (200, 200, 200, 200, 200, 200)),
        ("link.download", False, lambda w, me: ("GET", f"/s/{w['token']}/content?node_id={w['f']}", {}),
         (200, 200, 200, 200, 200, 200)),
        ("link.made-up-token", False, lambda w, me: ("GET", "/s/bl_" + "x" * 43, {}), (404,) * 6),
        ("link.node-outside-the-linked-folder", False,
         lambda w, me: ("GET", f"/s/{w['token']}/content?node_id={w['pf']}", {}), (404,) * 6),
        ("link.B's-node-through-A's-link", False,
         lambda w, me: ("GET", f"/s/{w['token']}?node_id={w['bfile']}", {}), (404,) * 6),
        ("link.revoked", False, lambda w, me: ("GET", f"/s/{w['revoked_token']}", {}), (410,) * 6),
        # ---- tus upload sessions (A's) ----
        ("upload.head", False, lambda w, me: ("HEAD", w["upload"], {"headers": TUS}), PRIVATE),
        ("upload.patch", True, lambda w, me: ("PATCH", w["nu"], {"data": b"abc", "headers": {
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}}),
         (204, 404, 404, 404, 401, 401)),
        ("upload.terminate", True, lambda w, me: ("DELETE", w["nu"], {"headers": TUS}), (204, 404, 404, 404, 401, 401)),
        ("upload.create-into-share", False,
         lambda w, me: ("POST", "/api/v1/uploads", {"headers": tus_meta(w["S"])}), CREATE),
        ("upload.create-into-A's-private-folder", False,
         lambda w, me: ("POST", "/api/v1/uploads", {"headers": tus_meta(w["P"])}), (201, 404, 404, 404, 401, 401)),
        ("upload.create-into-B's-folder", False,
         lambda w, me: ("POST", "/api/v1/uploads", {"headers": tus_meta(w["Bf"])}), STRANGERS),
        # ---- blocks and block sessions ----
        ("block.put", False, lambda w, me: ("PUT", f"/api/v1/blocks/{w['new_block']}", {"data": w["new_block_data"]}),
         ((200, 201),) * 4 + (401, 401)),
        ("block.missing-asks-for-A's-block", False,
         lambda w, me: ("POST", "/api/v1/blocks/missing", {"json": {"hashes": [w["X"]]}}), (200, 200, 200, 200, 401, 401),
         # only A may skip sending it: for anyone else it is missing, whoever else stores it
         lambda w, role, r: None if role == "owner" else w["X"] not in r.json()["missing"]),
        ("block.commit-A's-block-unsent", False,
         lambda w, me: ("POST", f"/api/v1/nodes/{me.root}/children/{uniq()}/commit",
                        {"json": {"blocks": [w["X"]], "size": len(w["X_data"]), "sha256": w["X"]}}),
         (201, 400, 400, 400, 401, 401)),
        ("block.batch-commit-A's-block-unsent", False,
         lambda w, me: ("POST", "/api/v1/batch/commit", {"json": {"files": [
             {"parent_id": me.root, "name": uniq(), "blocks": [w["X"]], "size": len(w["X_data"]), "sha256": w["X"]}]}}),
         (OK, 400, 400, 400, 401, 401)),
        ("block.commit-B's-session-block-unsent", False,  # Y: sent by B, in B's block session only
         lambda w, me: ("POST", f"/api/v1/nodes/{me.root}/children/{uniq()}/commit",
                        {"json": {"blocks": [w["Y"]], "size": len(w["Y_data"]), "sha256": w["Y"]}}),
         (400, 400, 400, 201, 401, 401)),
        ("block.missing-asks-for-B's-session-block", False,
         lambda w, me: ("POST", "/api/v1/blocks/missing", {"json": {"hashes": [w["Y"]]}}), (200, 200, 200, 200, 401, 401),
         lambda w, role, r: None if role == "stranger" else w["Y"] not in r.json()["missing"]),
        ("block.map-of-A's-private-file", False, lambda w, me: ("GET", f"/api/v1/nodes/{w['pf']}/blocks", {}), PRIVATE),
    ]


@pytest.fixture(scope="module")
def world(server):
    """A's drive: shared folder S (editor and viewer) with f.txt (two versions), sub/, a public
    link; private folder P with a file; a trashed file; a tus upload. B's folder with a file and
    a link, a block in B's block session. T, a third user, to grant to."""
    A, E, V, B, T = (server.user() for _ in range(5))
    S = A.mkdir(A.root, uniq("shared"))
    f = A.upload(S["id"], "f.txt", b"version one").json()
    A.upload(S["id"], "f.txt", b"version two")
    vid = A.get(f"/api/v1/nodes/{f['id']}/versions").json()["items"][-1]["id"]
    sub = A.mkdir(S["id"], "sub")
    P = A.mkdir(A.root, uniq("private"))
    x_data = os.urandom(3000)  # a block only A has: a one-block file in A's private folder
    pf = A.upload(P["id"], "p.bin", x_data).json()
    pvid = A.get(f"/api/v1/nodes/{pf['id']}/versions").json()["items"][0]["id"]
    trashed = A.upload(S["id"], "gone.txt", b"t").json()
    assert A.delete(f"/api/v1/nodes/{trashed['id']}").status_code == 200
    for who, role in ((E, "editor"), (V, "viewer")):
        assert A.post(f"/api/v1/nodes/{S['id']}/shares", json={"email": who.email, "role": role}).status_code == 201
    link = A.post(f"/api/v1/nodes/{S['id']}/links", json={}).json()
    link_pf = A.post(f"/api/v1/nodes/{pf['id']}/links", json={}).json()
    revoked = A.post(f"/api/v1/nodes/{S['id']}/links", json={}).json()
    assert A.delete(f"/api/v1/nodes/{S['id']}/links/{revoked['id']}").status_code == 204
    Bf = B.mkdir(B.root, "b-folder")
    bfile = B.upload(Bf["id"], "b.txt", b"b's").json()
    bvid = B.get(f"/api/v1/nodes/{bfile['id']}/versions").json()["items"][0]["id"]
    link_B = B.post(f"/api/v1/nodes/{Bf['id']}/links", json={}).json()
    r = A.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "3", "Upload-Metadata": "filename " + _b64("u.bin")})
    new_block_data = os.urandom(1000)
    y_data = os.urandom(2000)
    y = hashlib.sha256(y_data).hexdigest()
    assert B.put(f"/api/v1/blocks/{y}", data=y_data).status_code == 201
    w = {"A": A, "E": E, "V": V, "B": B, "T": T, "A_root": A.root, "S": S["id"], "S_name": S["name"],
         "f": f["id"], "vid": vid, "sub": sub["id"], "P": P["id"], "pf": pf["id"], "pvid": pvid,
         "X": hashlib.sha256(x_data).hexdigest(), "X_data": x_data, "Bf": Bf["id"], "bfile": bfile["id"],
         "bvid": bvid, "link_B": link_B["id"], "token": link["token"], "link_pf": link_pf["id"],
         "revoked_token": revoked["token"], "upload": urlparse(r.headers["Location"]).path,
         "T_email": T.email, "T_id": T.id, "V_email": V.email, "V_id": V.id, "B_id": B.id,
         "new_block": hashlib.sha256(new_block_data).hexdigest(), "new_block_data": new_block_data,
         "Y": y, "Y_data": y_data, "A_trashed": {trashed["id"]}}
    w["A_nodes"] = {S["id"], f["id"], sub["id"], P["id"], pf["id"], trashed["id"]}
    return w


def fresh(w: dict, name: str) -> dict:
    """New objects for a case that changes or removes its target: a file in S (nf), a file
    trashed from S (nt), a subfolder of S with a child (nsub; with T's grant for share.revoke),
    a private folder of A (nP), a link on S (nl), a tus upload of A (nu)."""
    A = w["A"]
    nf = A.upload(w["S"], uniq("nf"), b"fresh").json()
    nt = A.upload(w["S"], uniq("nt"), b"bin").json()
    assert A.delete(f"/api/v1/nodes/{nt['id']}").status_code == 200
    nsub = A.mkdir(w["S"], uniq("nsub"))
    child = A.mkdir(nsub["id"], "child")
    if name == "share.revoke":
        r = A.post(f"/api/v1/nodes/{nsub['id']}/shares", json={"email": w["T_email"], "role": "viewer"})
        assert r.status_code == 201, r.text
    nP = A.mkdir(A.root, uniq("nP"))
    nl = A.post(f"/api/v1/nodes/{w['S']}/links", json={}).json()
    r = A.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "3", "Upload-Metadata": "filename " + _b64(uniq())})
    assert r.status_code == 201, r.text
    return {"nf": nf["id"], "nt": nt["id"], "nsub": nsub["id"], "nsub_child": child["id"], "nP": nP["id"],
            "nl": nl["id"], "nu": urlparse(r.headers["Location"]).path}


def caller(server, w, role) -> tuple[Client, Client]:
    """The client for ``role`` and 'me' (whose root a case may name)."""
    if role == "anon":
        return server.anon(), w["A"]
    if role == "link":
        return Client(server.url, w["token"]), w["A"]
    c = {"owner": w["A"], "editor": w["E"], "viewer": w["V"], "stranger": w["B"]}[role]
    return c, c


def test_authorization_matrix(server, world, request):
    w = world
    cases = forbidden = denied = leaks = 0
    wrong = []
    for row in rows():
        name, needs_fresh, make, expected = row[:4]
        leak = row[4] if len(row) > 4 else None
        ww = w
        for role, want in zip(ROLES, expected):
            if needs_fresh and ww is w:  # new targets once a request changed them (a denied one must not)
                ww = {**w, **fresh(w, name)}
            client, me = caller(server, ww, role)
            method, path, kw = make(ww, me)
            r = client.request(method, path, **kw)
            got = _batch_status(r) if path.startswith("/api/v1/batch/") else r.status_code
            wants = want if isinstance(want, tuple) else (want,)
            allowed = all(x == OK or x < 400 for x in wants)
            leaked = leak(ww, role, r) if leak is not None and r.status_code == 200 else None
            succeeded = got == OK or got < 400
            if succeeded and method not in ("GET", "HEAD"):
                ww = w
            cases += 1
            if not allowed or leaked is not None:  # a forbidden case: denial or nothing shown
                forbidden += 1
                if (succeeded and not allowed) or leaked:
                    leaks += 1
                elif got in wants:
                    denied += 1
            if got not in wants or leaked:
                wrong.append(f"{name} as {role}: {method} {path} -> {got} (want {want}){' LEAK' if leaked else ''}"
                             f" {r.text[:160] if method != 'HEAD' else ''}")
            if not succeeded and method != "HEAD" and r.status_code >= 400:
                assert r.headers["Content-Type"].startswith("application/problem+json"), (name, role, r.text)
    engine = request.node.callspec.params.get("server", "?")
    figures.record("authorization matrix", runs=cases, faults=forbidden, detected=denied, lost=leaks, engine=engine,
                   resources=len({row[0].split(".")[0] for row in rows()}), operations=len(rows()))
    assert wrong == []
    assert leaks == 0 and denied == forbidden


# ---- mass assignment: read-only fields in bodies are refused and change nothing ----

READ_ONLY = {"owner_id": 999, "owner": "someone@example.com", "size": 1, "quota_bytes": 10**15,
             "used_bytes": 0, "is_admin": True, "role": "owner", "id": 1, "sha256": "0" * 64}


def test_mass_assignment_is_refused(server, world, request):
    w, A = world, world["A"]
    before = A.get("/api/v1/account").json()
    f = A.upload(w["S"], uniq("ma"), b"mass").json()
    routes = [  # (route, method, path, body without the extra field, fields the route owns)
        ("create folder", "POST", f"/api/v1/nodes/{w['S']}/children", {"name": uniq()}, ()),
        ("rename", "PATCH", f"/api/v1/nodes/{f['id']}", {"name": uniq()}, ()),
        ("copy", "POST", f"/api/v1/nodes/{f['id']}/copy", {"parent_id": w["S"], "name": uniq()}, ()),
        ("grant", "POST", f"/api/v1/nodes/{w['S']}/shares", {"email": w["T_email"], "role": "viewer"}, ("role",)),
        ("link", "POST", f"/api/v1/nodes/{w['S']}/links", {"role": "viewer"}, ("role",)),
        ("commit", "POST", f"/api/v1/nodes/{w['S']}/children/{uniq()}/commit",
         {"blocks": [], "size": 0, "sha256": EMPTY}, ("size", "sha256")),
        ("sign in", "POST", "/api/v1/auth/tokens", {"email": A.email, "password": "password123"}, ()),
        ("missing blocks", "POST", "/api/v1/blocks/missing", {"hashes": []}, ()),
    ]
    attempts = refused = took_effect = 0
    problems = []
    for route, method, path, body, own in routes:
        for field, value in READ_ONLY.items():
            if field in own:
                continue
            attempts += 1
            r = A.request(method, path, json={**body, field: value})
            if r.status_code == 400 and field in r.text:
                refused += 1
            else:
                problems.append(f"{route} with {field}: {r.status_code} {r.text[:150]}")
    # batch entries: an entry with a read-only field is refused on its own
    for route, path, key, entry in (
            ("batch commit", "/api/v1/batch/commit", "files",
             {"parent_id": w["S"], "name": uniq(), "blocks": [], "size": 0, "sha256": EMPTY}),
            ("batch folders", "/api/v1/batch/folders", "folders", {"parent_id": w["S"], "name": uniq()})):
        for field, value in READ_ONLY.items():
            if field in entry:
                continue
            attempts += 1
            r = A.post(path, json={key: [{**entry, field: value}]})
            if r.status_code == 200 and "error" in r.json()["results"][0]:
                refused += 1
            else:
                problems.append(f"{route} with {field}: {r.status_code} {r.text[:150]}")
    # the account has no update route: PUT and PATCH are 405
    for method in ("PUT", "PATCH"):
        attempts += 1
        r = A.request(method, "/api/v1/account", json={"quota_bytes": 10**15, "is_admin": True, "used_bytes": 0})
        refused += r.status_code == 405
        if r.status_code != 405:
            problems.append(f"{method} /account: {r.status_code}")
    # tus metadata is free-form: extra keys are kept as metadata and grant nothing
    meta = ",".join(f"{k} {_b64(v)}" for k, v in {"filename": uniq("tus"), "parent_id": w["S"], **READ_ONLY}.items())
    r = A.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "3", "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    r = A.patch(urlparse(r.headers["Location"]).path, data=b"abc",
                headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    node = A.get(f"/api/v1/nodes/{r.headers['X-Blockdrive-Node-Id']}").json()
    attempts += 1
    if node["size"] == 3 and node["parent_id"] == w["S"] and node["permissions"]["role"] == "owner" \
            and w["B"].get(f"/api/v1/nodes/{node['id']}").status_code == 404:
        refused += 1  # ignored
    else:
        problems.append(f"tus metadata took effect: {node}")
    # read back: nothing changed but what the legitimate requests did
    after = A.get("/api/v1/account").json()
    for key in ("id", "email", "plan", "quota_bytes", "is_admin", "root_id"):
        if after[key] != before[key]:
            took_effect += 1
            problems.append(f"account {key}: {before[key]} -> {after[key]}")
    if after["used_bytes"] != before["used_bytes"] + len(b"mass") + 3:
        took_effect += 1
        problems.append(f"used_bytes {before['used_bytes']} -> {after['used_bytes']}")
    # and a refused create left nothing behind
    created = {n["name"] for n in A.get(f"/api/v1/nodes/{w['S']}/children?limit=1000").json()["items"]}
    for route, method, path, body, own in routes:
        name = body.get("name") or (path.split("/children/")[1].split("/")[0] if "/children/" in path else None)
        if name and route != "rename" and name in created:
            took_effect += 1
            problems.append(f"{route}: {name!r} was created by a refused request")
    still = A.get(f"/api/v1/nodes/{f['id']}").json()
    if (still["name"], still["size"], still["parent_id"]) != (f["name"], 4, w["S"]):
        took_effect += 1
        problems.append(f"file changed: {still}")
    engine = request.node.callspec.params.get("server", "?")
    figures.record("mass assignment", runs=attempts, faults=attempts, detected=refused, lost=took_effect,
                   engine=engine)
    assert problems == [] and refused == attempts and took_effect == 0
