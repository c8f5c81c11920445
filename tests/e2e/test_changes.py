"""The change feed over HTTP against the real gunicorn server: entries for the owner and a
grantee but not a stranger, paging, resets, and the long-poll, which is woken by a change
made in another process and holds no server thread while it waits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.e2e.conftest import ENGINES, served
from tests.e2e.test_api import problem

WAITERS = 12  # more than the server's threads (2 workers x 2 threads below)


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "changes", extra_env={"BLOCKDRIVE_SERVER_THREADS": "2"}) as srv:
        yield srv


def latest(c) -> str:
    r = c.get("/api/v1/changes/latest")
    assert r.status_code == 200, r.text
    return r.json()["cursor"]


def all_changes(c, cursor, limit=100):
    out = []
    while True:
        body = c.get("/api/v1/changes", params={"cursor": cursor, "limit": limit}).json()
        out += body["entries"]
        cursor = body["cursor"]
        if not body["has_more"]:
            return out, cursor


def test_feed_for_owner_grantee_and_stranger(server):
    alice, bob, eve = server.user(), server.user(), server.user()
    a0, b0, e0 = latest(alice), latest(bob), latest(eve)
    top = alice.post(f"/api/v1/nodes/{alice.root}/children", json={"name": "top"}).json()
    assert alice.post(f"/api/v1/nodes/{top['id']}/shares", json={"email": bob.email, "role": "editor"}).status_code == 201
    f = alice.put(f"/api/v1/nodes/{top['id']}/children/a.txt", data=b"one").json()
    assert bob.put(f"/api/v1/nodes/{top['id']}/children/a.txt", data=b"two").status_code == 200
    assert bob.patch(f"/api/v1/nodes/{f['id']}", json={"name": "b.txt"}).status_code == 200
    assert alice.delete(f"/api/v1/nodes/{f['id']}").status_code == 200
    mine, a1 = all_changes(alice, a0, limit=2)
    assert [(e["kind"], e["node"]["name"]) for e in mine] == [
        ("create", "top"), ("create", "a.txt"), ("version", "a.txt"), ("move", "b.txt"), ("delete", "b.txt")]
    assert mine[3]["old_name"] == "a.txt" and mine[3]["old_parent_id"] == top["id"]
    assert mine[2]["node"]["size"] == 3 and mine[2]["node"]["permissions"]["role"] == "owner"
    theirs, _ = all_changes(bob, b0)
    assert [(e["kind"], e["node"]["name"]) for e in theirs] == [
        ("share_gained", "top"), ("create", "a.txt"), ("version", "a.txt"), ("move", "b.txt"), ("delete", "b.txt")]
    assert theirs[0]["node"]["permissions"]["role"] == "editor"
    assert all_changes(eve, e0)[0] == []
    assert all_changes(alice, a1)[0] == []


def test_bad_cursors(server):
    alice, bob = server.user(), server.user()
    problem(alice.get("/api/v1/changes"), 400)
    problem(alice.get("/api/v1/changes", params={"cursor": "garbled"}), 410, "reset")
    body = problem(bob.get("/api/v1/changes", params={"cursor": latest(alice)}), 410, "reset")
    assert "list the tree again" in body["detail"]
    problem(bob.get("/api/v1/changes/wait", params={"cursor": latest(alice)}), 410, "reset")
    problem(server.anon().get("/api/v1/changes/latest"), 401)


def change_elsewhere(server, user_id: int, root_id: int, name: str) -> None:
    """Make a folder with storage directly, in a process of its own (not the server's)."""
    code = textwrap.dedent(f"""
        from storage.config import load_config
        from storage.drive import Drive
        d = Drive(load_config())
        d.mkdir({user_id}, {root_id}, {name!r})
        d.close()
    """)
    out = subprocess.run([sys.executable, "-c", code], env=server.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def wait_in_thread(c, cursor, timeout):
    got = {}

    def run():
        r = c.get("/api/v1/changes/wait", params={"cursor": cursor, "timeout": timeout})
        got["status"], got["body"] = r.status_code, r.json()
    t = threading.Thread(target=run)
    t.start()
    return t, got


def test_wait_answers_false_at_its_timeout(server):
    alice = server.user()
    r = alice.get("/api/v1/changes/wait", params={"cursor": latest(alice), "timeout": 1})
    assert r.status_code == 200 and r.json() == {"changes": False}
    assert r.headers["Content-Type"] == "application/json"


def test_wait_is_woken_by_a_change_in_another_process(server):
    alice = server.user()
    t, got = wait_in_thread(alice, latest(alice), 90)
    change_elsewhere(server, alice.id, alice.root, "from-elsewhere")
    t.join(80)  # answered before the timeout it asked for, or the answer would be false
    assert not t.is_alive() and got == {"status": 200, "body": {"changes": True}}


def test_waiting_clients_hold_no_server_thread(server):
    alice, bob = server.user(), server.user()
    cursor = latest(alice)
    waits = [wait_in_thread(alice, cursor, 90) for _ in range(WAITERS)]
    time.sleep(1)  # let them reach the server; nothing is asserted about how long anything took
    # Twelve waiting clients and four threads: were any thread held, these would queue
    # behind the waits until their timeout, past the client's own 30-second bound.
    for _ in range(3):
        r = bob.s.get(server.url + "/api/v1/account", timeout=30)
        assert r.status_code == 200
    r = bob.get("/api/v1/changes/wait", params={"cursor": latest(bob), "timeout": 1})
    assert r.json() == {"changes": False}  # bob's feed did not move
    assert all(t.is_alive() for t, _ in waits)
    assert alice.post(f"/api/v1/nodes/{alice.root}/children", json={"name": "wake"}).status_code == 201
    for t, got in waits:
        t.join(80)
        assert not t.is_alive() and got == {"status": 200, "body": {"changes": True}}
