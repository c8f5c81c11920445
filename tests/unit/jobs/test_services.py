"""The jobs against the real services: tiering to S3, and Spark's JDBC reader on MariaDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from storage import clock
from storage.fsck import fsck
from storage.models import Block, Pack, VersionBlock
from tests.conftest import put_bytes, rand, read_all

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def _unique_prefix(s3_url: str) -> str:
    p = urlsplit(s3_url)
    return urlunsplit((p.scheme, p.netloc, f"/jobs-{uuid.uuid4().hex[:8]}", p.query, ""))


def test_tier_to_s3_copies_verifies_switches_and_reads_back(tmp_path, db_engine, spark, s3_url):
    from jobs.runner import run_job
    from storage.drive import Drive
    from tests.unit.jobs.conftest import jobs_config
    cfg = jobs_config(tmp_path, grace=0)
    cfg["storage"]["cold_url"] = _unique_prefix(s3_url)
    clock.reset()
    drive = Drive(cfg, engine=db_engine)
    u, _ = drive.create_user("s3@example.com", "password123")
    data = rand(300_000, 77)
    f = put_bytes(drive, u, "cold.bin", data)
    clock.advance(31 * 86400)
    r = run_job("tier", drive, spark, cfg)
    assert r.stats["packs_tiered"] == 1 and r.stats["errors"] == []
    with drive.sm() as s:
        urls = s.execute(sa.select(Pack.url).join(Block, Block.pack_id == Pack.id).distinct()).scalars().all()
    assert urls and all(u_.startswith("s3://") for u_ in urls)
    assert read_all(drive, u, f.node.id) == data  # ranged GETs from S3
    clock.advance(5)
    assert run_job("tier", drive, spark, cfg).stats["packs_deleted"] == 1
    assert read_all(drive, u, f.node.id) == data
    assert fsck(drive, deep=True).ok
    clock.reset()


@pytest.mark.parametrize("db_engine", ["mariadb"], indirect=True)  # JDBC is the MySQL path
def test_jdbc_reader_on_mariadb(tmp_path, mysql_url, db_engine):
    """reconcile through Spark's JDBC reader (MariaDB driver from Maven Central) in its own
    process, since the driver jar must be on the classpath when the JVM starts."""
    from storage.drive import Drive
    from tests.unit.jobs.conftest import jobs_config
    cfg = jobs_config(tmp_path)
    drive = Drive(cfg, engine=db_engine)
    u, _ = drive.create_user("jdbc@example.com", "password123")
    f = put_bytes(drive, u, "a.bin", rand(200_000, 3))
    with drive.sm() as s, s.begin():
        bid = s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == f.version_id)).scalars().first()
        s.execute(sa.update(Block).where(Block.id == bid).values(refcount=Block.refcount + 2))
    db_url = db_engine.url.render_as_string(hide_password=False)  # the test's own database
    toml = tmp_path / "jdbc.toml"
    toml.write_text(f'[storage]\nhome = "{cfg["storage"]["home"]}"\n[database]\nurl = "{db_url}"\n'
                    f'[jobs]\njdbc = true\njdbc_partitions = 3\n')
    env = {**os.environ, "BLOCKDRIVE_CONFIG": str(toml), "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    p = subprocess.run([sys.executable, "-m", "jobs", "run", "reconcile", "--json", "-q"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["stats"]["refcount_drift"] == 1 and res["stats"]["repaired"] == 1, json.dumps(res["stats"])
