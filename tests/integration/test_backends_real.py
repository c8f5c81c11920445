"""The backend contract, and the drive's write and read paths, on real HDFS and S3."""

from __future__ import annotations

import io
import uuid

import pytest
import sqlalchemy as sa

from storage.backends import open_backend
from storage.backends.hdfs import HdfsBackend
from storage.errors import BackendUnavailable
from tests.backend_contract import BackendContract
from tests.conftest import make_config, rand

pytestmark = pytest.mark.integration


def _fresh(url: str) -> str:
    """A new, empty root under the test URL."""
    base, _, query = url.partition("?")
    return f"{base.rstrip('/')}/{uuid.uuid4().hex[:12]}" + (f"?{query}" if query else "")


class TestWebHdfs(BackendContract):
    @pytest.fixture
    def backend(self, webhdfs_url):
        return open_backend(_fresh(webhdfs_url) + "?user=root")


class TestHdfsNative(BackendContract):
    @pytest.fixture
    def backend(self, hdfs_url):
        b = open_backend(_fresh(hdfs_url), timeout=10)
        assert isinstance(b, HdfsBackend) and b.client == "hdfs-native"
        return b


class TestHdfsLibhdfs(BackendContract):
    @pytest.fixture
    def backend(self, hdfs_url):
        b = HdfsBackend(_fresh(hdfs_url), timeout=10, prefer_native=False)
        if b.client != "libhdfs":
            pytest.skip("libhdfs is not installed on this machine: pyarrow's HadoopFileSystem "
                        "cannot load, so hdfs:// runs through hdfs-native (tested above)")
        return b


class TestS3(BackendContract):
    @pytest.fixture
    def backend(self, s3_url):
        return open_backend(_fresh(s3_url))


@pytest.fixture(params=["webhdfs", "hdfs", "s3"])
def hot_url(request):
    url = request.getfixturevalue({"webhdfs": "webhdfs_url", "hdfs": "hdfs_url", "s3": "s3_url"}[request.param])
    url = _fresh(url)
    return url + "?user=root" if request.param == "webhdfs" else url


def test_drive_on_real_backends(tmp_path, hot_url, db_engine):
    """Put, dedup, range-read, version and fsck with packs on HDFS or S3 (and metadata on
    SQLite or MariaDB)."""
    from storage.drive import Drive
    from storage.fsck import fsck
    from storage.models import Pack
    cfg = make_config(tmp_path, url=hot_url, pack_max_bytes=1 << 20)
    d = Drive(cfg, engine=db_engine)
    a, _ = d.create_user("a@example.com", "password123")
    b, _ = d.create_user("b@example.com", "password123")
    data = rand(2_500_000, 1)
    ra = d.put(a.id, a.root_id, "f.bin", io.BytesIO(data))
    rb = d.put(b.id, b.root_id, "g.bin", io.BytesIO(data))
    assert rb.new_bytes > 0  # B's copy is written like fresh content, so its time tells B nothing
    assert b"".join(d.open(a.id, ra.node.id)[2]) == data
    assert b"".join(d.open(b.id, rb.node.id, start=1_000_000, end=1_700_001)[2]) == data[1_000_000:1_700_001]
    edited = data[:1_234_567] + b"!" + data[1_234_567:]
    r2 = d.put(a.id, a.root_id, "f.bin", io.BytesIO(edited))
    assert 0 < r2.new_bytes < 600_000  # only the blocks around the edit
    assert b"".join(d.open(a.id, ra.node.id)[2]) == edited
    with d.sm() as s:
        urls = s.execute(sa.select(Pack.url).where(Pack.state == "sealed")).scalars().all()
    assert urls and all(u.startswith(hot_url.split("?")[0]) for u in urls)
    rep = fsck(d, deep=True)
    assert rep.ok, rep.problems
    assert rep.stats["blocks_read"] > 0


def test_dead_backend_is_a_clear_prompt_error(tmp_path):
    """A NameNode that is not there: BackendUnavailable within the timeout, not a hang."""
    b = open_backend("hdfs://127.0.0.1:9/nothing", timeout=3)
    with pytest.raises(BackendUnavailable):
        b.size("packs/x.pack")
