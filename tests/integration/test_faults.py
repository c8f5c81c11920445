"""Backends that go away or say "not now": a clear error within the timeout, never a hang,
and never "block missing"."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time

import pytest

from storage.backends.arrow import translate
from storage.errors import BackendUnavailable, IntegrityError, NotFound
from tests.conftest import make_config, rand

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def doomed_s3():
    """An S3 server of this test's own, to be killed mid-test."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield proc, f"s3://doomed/packs?endpoint=http://127.0.0.1:{port}&region=us-east-1"
    proc.kill()
    proc.wait()


def test_s3_server_going_away_mid_read_is_backend_unavailable(tmp_path, doomed_s3, monkeypatch, db_engine):
    from storage.drive import Drive
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    proc, url = doomed_s3
    d = Drive(make_config(tmp_path, url=url, timeout_seconds=3), engine=db_engine)
    d.skip_fsck = True
    u, _ = d.create_user("s3gone@example.com", "password123")
    data = rand(300_000, 1)
    nid = d.put(u.id, u.root_id, "f", io.BytesIO(data)).node.id
    assert b"".join(d.open(u.id, nid)[2]) == data
    proc.kill()
    proc.wait()
    t = time.monotonic()
    with pytest.raises(BackendUnavailable):
        b"".join(d.open(u.id, nid)[2])
    with pytest.raises(BackendUnavailable):
        d.put(u.id, u.root_id, "g", io.BytesIO(rand(100_000, 2)))
    # bounded by the timeouts and retries, not minutes (a loose bound: this is no benchmark)
    assert time.monotonic() - t < 120


@pytest.mark.parametrize("message", [
    "org.apache.hadoop.hdfs.server.namenode.SafeModeException: Cannot create file /x. Name node is in safe mode.",
    "AWS Error SLOW_DOWN during GetObject operation: Please reduce your request rate. (SlowDown)",
    "HTTP 503 Service Unavailable",
    "Connection refused",
])
def test_safe_mode_and_throttling_mean_retry_later(message):
    err = translate(OSError(message), "read packs/x.pack", "hdfs://nn:8020/p")
    assert isinstance(err, BackendUnavailable) and not isinstance(err, NotFound)
    assert "retry later" in str(err)


def test_missing_pack_on_hdfs_is_an_integrity_error_not_short_data(tmp_path, webhdfs_url, db_engine):
    """A pack deleted behind blockdrive's back: the download fails clearly."""
    import uuid

    import sqlalchemy as sa

    from storage.drive import Drive
    from storage.models import Pack
    url = f"{webhdfs_url.split('?')[0]}/{uuid.uuid4().hex[:12]}?user=root"
    d = Drive(make_config(tmp_path, url=url), engine=db_engine)
    d.skip_fsck = True
    u, _ = d.create_user("gone@example.com", "password123")
    nid = d.put(u.id, u.root_id, "f", io.BytesIO(rand(200_000, 3))).node.id
    with d.sm() as s:
        pack_url = s.execute(sa.select(Pack.url)).scalar_one()
    backend, key = d.blocks.backend_for(pack_url)
    backend.delete(key)
    with pytest.raises(IntegrityError, match="missing"):
        b"".join(d.open(u.id, nid)[2])
