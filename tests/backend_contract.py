"""The contract every block backend keeps. Subclass ``BackendContract`` and provide a
``backend`` fixture (an empty root); the same tests then run against that backend."""

from __future__ import annotations

import os

import pytest

from storage.errors import NotFound


class BackendContract:
    def test_write_then_read_whole_and_ranges(self, backend):
        data = os.urandom(3 * 1024 * 1024 + 17)
        out = backend.create("packs/ab/one.pack")
        for i in range(0, len(data), 1 << 20):
            out.write(data[i:i + (1 << 20)])
        out.close()
        assert backend.size("packs/ab/one.pack") == len(data)
        assert backend.read("packs/ab/one.pack") == data
        assert backend.read_range("packs/ab/one.pack", 12345, 100000) == data[12345:112345]
        assert backend.read_range("packs/ab/one.pack", len(data) - 5, 5) == data[-5:]

    def test_missing_object_is_not_found(self, backend):
        with pytest.raises(NotFound):
            backend.size("packs/zz/missing.pack")
        with pytest.raises(NotFound):
            backend.read_range("packs/zz/missing.pack", 0, 10)
        assert not backend.exists("packs/zz/missing.pack")

    def test_create_replaces(self, backend):
        backend.put("packs/aa/x.pack", b"first version")
        backend.put("packs/aa/x.pack", b"second")
        assert backend.read("packs/aa/x.pack") == b"second"

    def test_delete_is_idempotent(self, backend):
        backend.put("packs/aa/d.pack", b"x")
        assert backend.exists("packs/aa/d.pack")
        backend.delete("packs/aa/d.pack")
        backend.delete("packs/aa/d.pack")
        assert not backend.exists("packs/aa/d.pack")

    def test_list_is_recursive_with_sizes(self, backend):
        backend.put("packs/01/a.pack", b"12345")
        backend.put("packs/02/b.pack", b"1")
        backend.put("reports/r.parquet", b"abc")
        assert sorted(backend.list("packs")) == [("packs/01/a.pack", 5), ("packs/02/b.pack", 1)]
        assert list(backend.list("nothing-here")) == []

    def test_url_and_key_round_trip(self, backend):
        url = backend.url_for("packs/01/a.pack")
        assert backend.key_for(url) == "packs/01/a.pack"
        assert backend.key_for("zz://elsewhere/packs/01/a.pack") is None

    def test_empty_object(self, backend):
        backend.put("packs/00/empty.pack", b"")
        assert backend.size("packs/00/empty.pack") == 0
        assert backend.read_range("packs/00/empty.pack", 0, 0) == b""
