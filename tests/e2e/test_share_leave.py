"""The shared node stays its owner's, through the real server on SQLite and MariaDB: an editor
changes what is inside a shared folder but cannot delete, move or rename the folder itself
(API and WebDAV alike), and leaves the share with ``DELETE /api/v1/shared-with-me/<id>``."""

from __future__ import annotations

import requests

from tests.e2e.test_api import problem


def shared_folder(server):
    """owner's /team holding sub/ and a.txt, shared with bob as editor."""
    o, bob = server.user(), server.user()
    team = o.mkdir(o.root, "team")
    sub = o.mkdir(team["id"], "sub")
    a = o.upload(team["id"], "a.txt", b"a").json()
    assert o.post(f"/api/v1/nodes/{team['id']}/shares", json={"email": bob.email, "role": "editor"}).status_code == 201
    return o, bob, team, sub, a


def names(c, folder_id: int) -> list[str]:
    return sorted(i["name"] for i in c.get(f"/api/v1/nodes/{folder_id}/children").json()["items"])


def test_an_editor_cannot_take_the_shared_folder_from_its_owner(server):
    o, bob, team, sub, _a = shared_folder(server)
    p = problem(bob.delete(f"/api/v1/nodes/{team['id']}"), 403, "forbidden")
    assert "only its owner" in p["detail"]
    problem(bob.patch(f"/api/v1/nodes/{team['id']}", json={"name": "mine"}), 403, "forbidden")
    problem(bob.patch(f"/api/v1/nodes/{team['id']}", json={"parent_id": sub["id"]}), 403, "forbidden")
    for method, headers in (("DELETE", {}), ("MOVE", {"Destination": f"{server.url}/dav/mine"})):
        dav = requests.request(method, f"{server.url}/dav/Shared%20with%20me/team", auth=(bob.email, bob.token),
                               headers=headers, timeout=30)
        assert dav.status_code == 403, (method, dav.text)
    node = o.get(f"/api/v1/nodes/{team['id']}").json()
    assert (node["name"], node["parent_id"]) == ("team", o.root)
    assert o.get("/api/v1/trash").json()["items"] == []
    assert names(o, team["id"]) == ["a.txt", "sub"]


def test_an_editor_still_changes_everything_inside(server):
    o, bob, team, sub, a = shared_folder(server)
    assert bob.patch(f"/api/v1/nodes/{a['id']}", json={"name": "b.txt", "parent_id": sub["id"]}).status_code == 200
    assert bob.delete(f"/api/v1/nodes/{sub['id']}").status_code == 200
    assert names(o, team["id"]) == []


def test_a_grantee_leaves_a_share(server):
    o, bob, team, _sub, _a = shared_folder(server)
    assert [n["id"] for n in bob.get("/api/v1/shared-with-me").json()["items"]] == [team["id"]]
    r = bob.delete(f"/api/v1/shared-with-me/{team['id']}")
    assert r.status_code == 204, r.text
    assert bob.get("/api/v1/shared-with-me").json()["items"] == []
    problem(bob.get(f"/api/v1/nodes/{team['id']}"), 404)
    problem(bob.delete(f"/api/v1/shared-with-me/{team['id']}"), 404)  # nothing left to leave
    assert o.get(f"/api/v1/nodes/{team['id']}/shares").json()["items"] == []
    assert names(o, team["id"]) == ["a.txt", "sub"]
    problem(o.delete(f"/api/v1/shared-with-me/{team['id']}"), 404)  # an owner has no share to leave
