"""Unbounded trees, through the real server: a server started with small [limits] (set by
environment variables) refuses the F-into-G-into-F copy storm, chains past the depth limit
and a user past the node limit with 422 limit-exceeded problems, never a 500, on SQLite and
MariaDB. The server fixture's fsck afterwards checks every path and node count."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.conftest import ENGINES, served

MAX_DEPTH, MAX_PER_COPY, MAX_PER_USER = 12, 20, 150
LIMIT_TYPE = "https://blockdrive.dev/problems/limit-exceeded"


@pytest.fixture(scope="module", params=ENGINES)
def limited(request, tmp_path_factory):
    with served(request, tmp_path_factory, "limited", {
            "BLOCKDRIVE_LIMITS_MAX_DEPTH": str(MAX_DEPTH),
            "BLOCKDRIVE_LIMITS_MAX_NODES_PER_COPY": str(MAX_PER_COPY),
            "BLOCKDRIVE_LIMITS_MAX_NODES_PER_USER": str(MAX_PER_USER)}) as srv:
        yield srv


def refused(r, limit: str, most: int) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    p = r.json()
    assert (p["type"], p["limit"], p["max"]) == (LIMIT_TYPE, limit, most)
    assert f"limits.{limit}" in p["detail"]


def tree_size(c, node_id: int) -> int:
    r = c.get(f"/api/v1/nodes/{node_id}/tree")
    assert r.status_code == 200 and not r.json()["truncated"]
    return len(r.json()["items"])


def test_copy_storm_stops_at_the_copy_limit(limited):
    c = limited.user()
    f, g = c.mkdir(c.root, "F")["id"], c.mkdir(c.root, "G")["id"]
    assert c.upload(f, "x.bin", b"payload").status_code == 201
    statuses = []
    for i in range(17):
        src, dst = (f, g) if i % 2 == 0 else (g, f)
        r = c.post(f"/api/v1/nodes/{src}/copy", json={"parent_id": dst, "name": f"c{i}"})
        statuses.append(r.status_code)
        assert r.status_code in (201, 422), r.text
        if r.status_code == 422:
            refused(r, "max_nodes_per_copy", MAX_PER_COPY)
    assert 422 in statuses  # G, doubled each round, is refused; F alone still fits
    assert tree_size(c, c.root) <= 3 + 17 * MAX_PER_COPY  # today's code reached 40,213
    assert c.get(f"/api/v1/nodes/{f}").status_code == 200  # and the server answers as before


def test_chain_past_the_depth_limit_is_refused_everywhere(limited):
    c = limited.user()
    ids, parent = [], c.root
    for i in range(MAX_DEPTH):
        parent = c.mkdir(parent, f"d{i}")["id"]
        ids.append(parent)
    bottom = ids[-1]
    refused(c.post(f"/api/v1/nodes/{bottom}/children", json={"name": "deeper", "kind": "folder"}),
            "max_depth", MAX_DEPTH)
    refused(c.upload(bottom, "f.txt", b"too deep"), "max_depth", MAX_DEPTH)
    refused(c.post("/api/v1/batch/folders", json={"folders": [{"parent_id": bottom, "name": "deeper"}]}),
            "max_depth", MAX_DEPTH)
    side = c.mkdir(c.root, "side")["id"]
    c.mkdir(c.mkdir(side, "s1")["id"], "s2")  # a subtree three levels tall
    refused(c.patch(f"/api/v1/nodes/{side}", json={"parent_id": ids[-3]}), "max_depth", MAX_DEPTH)
    refused(c.post(f"/api/v1/nodes/{side}/copy", json={"parent_id": ids[-3]}), "max_depth", MAX_DEPTH)
    assert c.patch(f"/api/v1/nodes/{side}", json={"parent_id": ids[-4]}).status_code == 200  # just fits
    # a resumable upload into the bottom folder is refused when it starts, before any byte
    meta = f"filename {base64.b64encode(b't.bin').decode()},parent_id {base64.b64encode(str(bottom).encode()).decode()}"
    refused(c.post("/api/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3",
                                                "Upload-Metadata": meta}), "max_depth", MAX_DEPTH)
    assert c.get(f"/api/v1/resolve?path=/{'/'.join(f'd{i}' for i in range(MAX_DEPTH))}").json()["id"] == bottom


def test_node_limit_per_user(limited):
    c = limited.user()
    r = c.post("/api/v1/batch/folders", json={"folders": [{"parent_id": c.root, "name": f"f{i}"}
                                                          for i in range(MAX_PER_USER - 1)]})
    assert r.status_code == 200, r.text
    last = c.mkdir(c.root, "last")["id"]
    refused(c.post(f"/api/v1/nodes/{c.root}/children", json={"name": "one-more", "kind": "folder"}),
            "max_nodes_per_user", MAX_PER_USER)
    refused(c.upload(last, "f.txt", b"x"), "max_nodes_per_user", MAX_PER_USER)
    refused(c.post(f"/api/v1/nodes/{last}/copy", json={"parent_id": c.root, "name": "copy"}),
            "max_nodes_per_user", MAX_PER_USER)
    assert c.delete(f"/api/v1/nodes/{last}").status_code == 200  # the trash still counts
    refused(c.post(f"/api/v1/nodes/{c.root}/children", json={"name": "one-more", "kind": "folder"}),
            "max_nodes_per_user", MAX_PER_USER)
    assert c.post(f"/api/v1/nodes/{last}/restore").status_code == 200
    other = limited.user()  # the limit is per user
    assert other.mkdir(other.root, "mine")["name"] == "mine"
