"""Reading blocks back as they were scanned: another holder of a block when one file changed,
a lost block when none is left, and which files may be committed."""

from __future__ import annotations

import hashlib
import os

from client.sync.reading import CHANGED, DELETED, SHARED_LOST, BlockReader
from client.sync.scan import FileScan, stat_key


def scanned(path, data: bytes, blocks: list[tuple[int, int]]) -> FileScan:
    path.write_bytes(data)
    return FileScan(len(data), hashlib.sha256(data).hexdigest(),
                    [(hashlib.sha256(data[o:o + n]).hexdigest(), o, n) for o, n in blocks], stat=stat_key(os.stat(path)))


def test_a_block_is_read_from_another_file_holding_it_when_the_first_changed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    sa = scanned(a, b"shared!!" + b"only-a", [(0, 8), (8, 6)])
    sb = scanned(b, b"xx" + b"shared!!", [(0, 2), (2, 8)])
    sc = scanned(c, b"own", [(0, 3)])
    shared, only_a = sa.blocks[0][0], sa.blocks[1][0]
    r = BlockReader()
    r.learn([(str(a), sa), (str(b), sb), (str(c), sc)], {shared, only_a, sc.hashes[0]})
    with open(a, "ab") as f:  # a grows after its scan
        f.write(b"!")
    payload, came_from = r.read([(shared, str(a), 0, 8), (only_a, str(a), 8, 6), (sc.hashes[0], str(c), 0, 3)], {})
    assert payload == [(shared, b"shared!!"), (sc.hashes[0], b"own")]
    assert came_from == {shared: str(b), sc.hashes[0]: str(c)}
    assert r.failed == {str(a): CHANGED} and r.lost == {only_a}
    assert r.why_not_ready(str(a), sa) == CHANGED
    assert r.why_not_ready(str(b), sb) is None and r.why_not_ready(str(c), sc) is None
    # b goes away too: the shared block is lost, and a file holding it must wait
    os.unlink(b)
    payload, _ = r.read([(shared, str(a), 0, 8)], {})
    assert payload == [] and shared in r.lost and r.failed[str(b)] == DELETED
    d = tmp_path / "d"
    sd = scanned(d, b"shared!!", [(0, 8)])
    assert r.why_not_ready(str(d), sd) == SHARED_LOST


def test_bytes_kept_from_the_scan_are_sent_as_they_are_and_a_later_change_stops_the_commit(tmp_path):
    a = tmp_path / "a"
    sa = scanned(a, b"small", [(0, 5)])
    r = BlockReader()
    r.learn([(str(a), sa)], set(sa.hashes))
    a.write_bytes(b"changed, and longer")
    payload, came_from = r.read([(sa.hashes[0], str(a), 0, 5)], {sa.hashes[0]: b"small"})
    assert payload == [(sa.hashes[0], b"small")] and came_from == {}
    assert r.why_not_ready(str(a), sa) == CHANGED  # its stat is not the scan's
    a.unlink()
    assert r.why_not_ready(str(a), sa) == DELETED
