"""webapi/changes.py through Flask's test client: the answers' shapes, the reset problem,
a browser session's feed, and the long-poll's in-thread fallback (the handed-over path runs in tests/e2e/test_changes.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import clock
from storage.changes import ChangeFeed
from tests.unit.webapi.web_support import sign_in
from webapi import create_app
from webapi.longpoll import Waiters


@pytest.fixture
def app(config, drive):
    return create_app(config, drive=drive)


@pytest.fixture
def user(drive):
    u, token = drive.create_user("feed@example.com", "password123")
    return u, {"Authorization": f"Bearer {token}"}


def test_latest_then_changes(app, drive, user):
    u, auth = user
    c = app.test_client()
    cur = c.get("/api/v1/changes/latest", headers=auth).get_json()["cursor"]
    d = drive.mkdir(u.id, u.root_id, "docs")
    drive.move(u.id, d.id, name="papers")
    body = c.get("/api/v1/changes", query_string={"cursor": cur, "limit": 1}, headers=auth).get_json()
    assert body["has_more"] is True
    [e] = body["entries"]
    assert (e["kind"], e["node"]["id"], e["node"]["name"], e["node"]["permissions"]["role"]) == \
        ("create", d.id, "docs", "owner")
    assert "old_name" not in e and e["at"].endswith("Z")
    body = c.get("/api/v1/changes", query_string={"cursor": body["cursor"]}, headers=auth).get_json()
    assert [(e["kind"], e["old_name"], e["old_parent_id"], e["node"]["name"]) for e in body["entries"]] == \
        [("move", "docs", u.root_id, "papers")]
    assert body["has_more"] is False


def test_bad_and_expired_cursors(app, drive, user):
    u, auth = user
    c = app.test_client()
    assert c.get("/api/v1/changes", headers=auth).status_code == 400
    assert c.get("/api/v1/changes/latest").status_code == 401
    r = c.get("/api/v1/changes", query_string={"cursor": "nonsense"}, headers=auth)
    assert r.status_code == 410 and r.get_json()["type"].endswith("/reset") and r.get_json()["reset"] is True
    old = c.get("/api/v1/changes/latest", headers=auth).get_json()["cursor"]
    drive.mkdir(u.id, u.root_id, "x")
    clock.advance(2 * 86400)
    ChangeFeed(drive.sm).prune(clock.now() - dt.timedelta(days=1))
    r = c.get("/api/v1/changes", query_string={"cursor": old}, headers=auth)
    assert r.status_code == 410 and "list the tree again" in r.get_json()["detail"]
    assert c.get("/api/v1/changes/wait", query_string={"cursor": old}, headers=auth).status_code == 410


def test_wait_in_thread(app, drive, user):
    u, auth = user
    c = app.test_client()
    cur = c.get("/api/v1/changes/latest", headers=auth).get_json()["cursor"]
    r = c.get("/api/v1/changes/wait", query_string={"cursor": cur, "timeout": 1}, headers=auth)
    assert r.status_code == 200 and r.get_json() == {"changes": False}
    drive.mkdir(u.id, u.root_id, "x")
    r = c.get("/api/v1/changes/wait", query_string={"cursor": cur, "timeout": 60}, headers=auth)
    assert r.get_json() == {"changes": True}


def test_a_browser_session_reads_its_own_feed(web):
    app, d, users = web
    c = app.test_client()
    sign_in(c, "bob@example.com", "password-bob")
    cur = c.get("/api/v1/changes/latest").get_json()["cursor"]
    d.mkdir(users["ann"].id, users["ann"].root_id, "ann's")
    d.mkdir(users["bob"].id, users["bob"].root_id, "bob's")
    body = c.get("/api/v1/changes", query_string={"cursor": cur}).get_json()
    assert [e["node"]["name"] for e in body["entries"]] == ["bob's"]
    assert c.get("/api/v1/changes/wait", query_string={"cursor": cur, "timeout": 1}).get_json() == {"changes": True}
    assert app.test_client().get("/api/v1/changes/wait", query_string={"cursor": cur}).status_code == 401


def test_a_head_does_not_wait(app, user, monkeypatch):
    u, auth = user

    def no_waiting(*_args):
        raise AssertionError("a HEAD waited")
    monkeypatch.setattr(Waiters, "wait_here", no_waiting)
    c = app.test_client()
    cur = c.get("/api/v1/changes/latest", headers=auth).get_json()["cursor"]
    r = c.head("/api/v1/changes/wait", query_string={"cursor": cur, "timeout": 3600}, headers=auth)
    assert r.status_code == 200 and r.data == b""
