"""The maintenance jobs with packs on real HDFS (WebHDFS and the native client) and metadata
on SQLite and MariaDB: gc, compact and scrub bring physical bytes down to live bytes and every
live file reads back."""

from __future__ import annotations

import io
import uuid

import pytest
import sqlalchemy as sa

from storage import clock
from storage.config import load_config
from storage.drive import Drive
from storage.fsck import fsck
from storage.models import Block, Pack
from tests.conftest import FAST_SCRYPT, SMALL_CHUNKS, rand
from tests.unit.jobs.conftest import JOBS_TEST, spark  # noqa: F401  (the shared SparkSession)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["webhdfs", "hdfs"])
def hdfs_drive(request, tmp_path, db_engine):
    base = request.getfixturevalue(f"{request.param}_url").split("?")[0]
    url = f"{base}/{uuid.uuid4().hex[:12]}" + ("?user=root" if request.param == "webhdfs" else "")
    cfg = load_config(env={}, overrides={
        "storage": {"home": str(tmp_path / "home"), "url": url, **SMALL_CHUNKS},
        "security": FAST_SCRYPT, "gc": {"grace_seconds": 0}, "jobs": JOBS_TEST})
    clock.reset()
    yield Drive(cfg, engine=db_engine)
    clock.reset()


def physical(d) -> int:
    with d.sm() as s:
        return int(s.execute(sa.select(sa.func.sum(Pack.size)).where(Pack.state.in_(("sealed", "retiring"))))
                   .scalar() or 0)


def test_jobs_on_hdfs(hdfs_drive, spark):  # noqa: F811
    from jobs.runner import run_job
    d = hdfs_drive
    u, _ = d.create_user("jobs@example.com", "password123")
    live = {}
    for i in range(6):
        data = rand(120_000, 300 + i)
        live[d.put(u.id, u.root_id, f"f{i}", io.BytesIO(data)).node.id] = data
    doomed = list(live)[:3]
    for nid in doomed:
        d.delete(u.id, nid)
        d.purge(u.id, nid)
        live.pop(nid)
    before = physical(d)
    for _ in range(2):
        run_job("gc", d, spark)
        clock.advance(5)
    for _ in range(2):
        run_job("compact", d, spark)
        clock.advance(5)
    scrub = run_job("scrub", d, spark)
    assert scrub.status == "ok"
    after = physical(d)
    with d.sm() as s:
        live_bytes = int(s.execute(sa.select(sa.func.sum(Block.stored_size + 48))).scalar() or 0)
        assert s.execute(sa.select(sa.func.count()).select_from(Block).where(Block.refcount == 0)).scalar_one() == 0
    assert after < before
    assert after - live_bytes <= JOBS_TEST["fill_threshold"] * JOBS_TEST["target_pack_bytes"] + 64 * 1024
    for nid, data in live.items():
        assert b"".join(d.open(u.id, nid)[2]) == data
    # the packs the jobs deleted are gone from HDFS too
    with d.sm() as s:
        deleted = s.execute(sa.select(Pack.url).where(Pack.state == "deleted")).scalars().all()
    assert deleted
    for url in deleted:
        backend, key = d.blocks.backend_for(url)
        assert not backend.exists(key)
    rep = fsck(d, deep=True)
    assert rep.ok, rep.problems
