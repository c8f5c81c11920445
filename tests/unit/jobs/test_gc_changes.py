"""jobs/gc.py prunes the change feed past ``changes.retention_days``: a cursor from before
the pruned entries is told to reset, a newer one reads on."""

from __future__ import annotations

import pytest

from storage import clock
from storage.changes import ChangeFeed, CursorExpired


def test_gc_prunes_old_changes_and_expires_older_cursors(drive, make_user, run):
    u = make_user()
    feed = ChangeFeed(drive.sm)
    before = feed.latest(u.id)
    drive.mkdir(u.id, u.root_id, "old")
    clock.advance(31 * 86400)
    after_old = feed.latest(u.id)
    drive.mkdir(u.id, u.root_id, "new")
    r = run("gc")
    assert r.stats["changes_pruned"] == 1
    with pytest.raises(CursorExpired):
        feed.read(u.id, before)
    assert [e.node.name for e in feed.read(u.id, after_old).entries] == ["new"]
