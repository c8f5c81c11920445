import pytest

from storage.backends import open_backend, register, schemes
from storage.backends.local import LocalBackend
from storage.errors import ConfigError
from tests.backend_contract import BackendContract


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return open_backend((tmp_path / "store").as_uri())


def test_a_long_pack_is_handed_to_writeback_as_it_is_written(tmp_path, monkeypatch):
    """Every WRITEBACK_EVERY bytes the bytes so far are on the file (flushed from the
    buffer) and the kernel is asked to write them out, range after range with no gap, so
    the closing fsync waits for the tail only; the file still holds exactly what was written."""
    import os
    import sys

    from storage.backends import local

    if sys.platform == "linux":
        assert local.start_writeback is not None
    path = tmp_path / "store" / "packs" / "p.pack"
    hints = []

    def record(fd, offset, nbytes):
        hints.append((offset, nbytes, os.fstat(fd).st_size))

    monkeypatch.setattr(local, "start_writeback", record)
    piece = os.urandom(1024 * 1024 + 17)
    with LocalBackend((tmp_path / "store").as_uri()).create("packs/p.pack") as f:
        for _ in range(20):
            f.write(piece)
    assert path.read_bytes() == piece * 20
    assert len(hints) == 20 * len(piece) // local.WRITEBACK_EVERY
    start = 0
    for offset, nbytes, on_file in hints:
        assert offset == start and nbytes >= local.WRITEBACK_EVERY
        assert on_file == offset + nbytes
        start += nbytes


def test_bare_path_means_local_disk(tmp_path):
    b = open_backend(str(tmp_path / "bare"))
    assert isinstance(b, LocalBackend)
    assert b.url == (tmp_path / "bare").as_uri()


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown storage scheme 'ftp'.*known: file, hdfs, s3, webhdfs"):
        open_backend("ftp://example/packs")


def test_registering_a_scheme_twice_fails():
    with pytest.raises(ValueError, match="twice"):
        register("file", "storage.backends.local:LocalBackend")
    assert schemes() == ["file", "hdfs", "s3", "webhdfs"]


def test_s3_url_needs_a_bucket():
    with pytest.raises(ConfigError, match="bucket"):
        open_backend("s3:///prefix")


def test_unreachable_hdfs_is_a_prompt_clear_error():
    from storage.errors import BackendUnavailable
    b = open_backend("webhdfs://127.0.0.1:9/packs", timeout=2)
    with pytest.raises(BackendUnavailable, match="retry later"):
        b.size("packs/x.pack")


def test_unreachable_s3_is_a_clear_error(monkeypatch):
    from storage.errors import BackendError
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    b = open_backend("s3://bucket/p?endpoint=http://127.0.0.1:9&region=us-east-1", timeout=2)
    with pytest.raises(BackendError):
        b.size("packs/x.pack")
