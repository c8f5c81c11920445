"""gc thins old versions by the retention policy and credits their owners; reconcile
recounts used and pending bytes under the quota model."""

from __future__ import annotations

import sqlalchemy as sa

from storage import clock
from storage.models import User
from storage.uploads import Uploads
from tests.conftest import put_bytes, rand, read_all


def _to_noon() -> None:
    t = clock.now()
    clock.advance(((12 - t.hour) % 24) * 3600 - t.minute * 60 - t.second)


def test_gc_thins_old_versions_then_sweeps_their_blocks(drive, make_user, run):
    _to_noon()  # so that every version below falls on one calendar day
    u = make_user()
    payloads = [rand(50_000, 20 + i) for i in range(5)]
    for p in payloads:  # five versions within one hour, then three days pass
        r = put_bytes(drive, u, "doc", p)
        clock.advance(60)
    first = r.node.id
    clock.advance(3 * 86400)
    assert drive.account(u.id).used_bytes == 250_000
    dry = run("gc", dry_run=True)
    assert dry.stats["versions_thinned"] == 3 and len(drive.versions(u.id, first)) == 5
    r1 = run("gc")
    # the current version, and the newest old one of that day
    assert r1.stats["versions_thinned"] == 3 and r1.stats["version_bytes_freed"] == 150_000
    assert [v.size for v in drive.versions(u.id, first)] == [50_000, 50_000]
    assert drive.account(u.id).used_bytes == 100_000
    assert read_all(drive, u, first) == payloads[-1]
    assert r1.stats["marked"] > 0  # the thinned versions' blocks, now unreferenced
    clock.advance(3601)
    r2 = run("gc")
    assert r2.stats["versions_thinned"] == 0 and r2.stats["swept"] == r1.stats["marked"]


def test_reconcile_recounts_old_versions_and_pending_bytes(drive, make_user, run):
    u = make_user()
    put_bytes(drive, u, "a.bin", rand(100_000, 1))
    put_bytes(drive, u, "a.bin", rand(50_000, 2))
    Uploads(drive).create(u.id, u.root_id, "t.bin", 7_000)
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == u.id).values(used_bytes=50_000, pending_bytes=1))
    dry = run("reconcile", dry_run=True)
    assert dry.stats["usage_drift"] == 1
    r1 = run("reconcile")
    kinds = sorted((x["kind"], x["old"], x["new"]) for x in r1.stats["repairs"])
    assert kinds == [("pending", 1, 7_000), ("usage", 50_000, 150_000)]
    r2 = run("reconcile")
    assert r2.stats["usage_drift"] == 0 and r2.stats["repaired"] == 0
