"""The client's pure logic: the sync plan, which blocks to send and how they are batched,
download ranges, chunking identical to the server's, credentials and durations."""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat

import pytest

from client.api import ClientError
from client.cli import parse_duration, save_credentials
from client.sync import (FileScan, Index, RemoteEntry, blocks_to_send, coalesce_ranges, group_batches, plan_paths,
                         plan_sync, scan_file)
from client.sync.mirror import keep_skipped
from client.sync.plan import FOLDER
from storage.chunking import make_chunker


def fs(content: bytes) -> FileScan:
    h = hashlib.sha256(content).hexdigest()
    return FileScan(len(content), h, [(h, 0, len(content))] if content else [])


def rf(node_id: int, content: bytes) -> RemoteEntry:
    return RemoteEntry(node_id, "file", len(content), hashlib.sha256(content).hexdigest())


def rd(node_id: int) -> RemoteEntry:
    return RemoteEntry(node_id, "folder")


def ours(remote: dict[str, RemoteEntry]) -> dict[str, str]:
    """A last-synced map that makes every remote node this device's own, as it is now."""
    return {r: e.sha256 if e.kind == "file" else FOLDER for r, e in remote.items()}


def test_plan_for_an_empty_remote_creates_folders_parents_first_and_uploads_everything():
    local = {"a/b/x.txt": fs(b"x"), "y.txt": fs(b"y")}
    plan = plan_sync(local, {"a", "a/b", "empty"}, {})
    assert plan.mkdirs == ["a", "empty", "a/b"]
    assert plan.uploads == [("a/b/x.txt", None), ("y.txt", None)]
    assert plan.moves == plan.deletes == plan.conflicts == []


def test_plan_detects_renames_edits_deletions_and_unchanged_files():
    local = {"docs/renamed.txt": fs(b"report"), "docs/moved/there.bin": fs(b"moving"), "keep.txt": fs(b"same"),
             "edit.txt": fs(b"new text")}
    remote = {"docs": rd(1), "docs/report.txt": rf(2, b"report"), "here.bin": rf(3, b"moving"),
              "keep.txt": rf(4, b"same"), "edit.txt": rf(5, b"old text"), "gone.txt": rf(6, b"bye"),
              "old": rd(7), "old/inner.txt": rf(8, b"inner")}
    plan = plan_sync(local, {"docs", "docs/moved"}, remote, ours(remote))
    assert sorted(plan.moves) == [("docs/report.txt", "docs/renamed.txt", 2), ("here.bin", "docs/moved/there.bin", 3)]
    assert plan.uploads == [("edit.txt", hashlib.sha256(b"old text").hexdigest())]  # If-Match the old ETag
    assert plan.unchanged == ["keep.txt"]
    assert plan.mkdirs == ["docs/moved"]
    # the folder goes as one node; its file is not deleted separately; moved files are not deleted
    assert plan.deletes == [("gone.txt", 6), ("old", 7)]


def test_two_new_files_with_the_content_of_one_vanished_file_move_one_and_upload_the_other():
    local = {"a.txt": fs(b"dup"), "b.txt": fs(b"dup")}
    remote = {"orig.txt": rf(1, b"dup")}
    plan = plan_sync(local, set(), remote, ours(remote))
    assert plan.moves == [("orig.txt", "a.txt", 1)] and plan.uploads == [("b.txt", None)] and plan.deletes == []


def test_remote_changes_since_the_last_sync_are_conflicts_not_overwrites():
    base = hashlib.sha256(b"base").hexdigest()
    remote = {"f.txt": rf(1, b"their edit"), "d": rd(2), "d/g.txt": rf(3, b"their g"), "h.txt": rf(4, b"base")}
    local = {"f.txt": fs(b"my edit"), "h.txt": fs(b"mine")}
    last = {"f.txt": base, "d/g.txt": base, "h.txt": base}
    plan = plan_sync(local, set(), remote, last)
    assert sorted(c["path"] for c in plan.conflicts) == ["d/g.txt", "f.txt"]
    assert plan.uploads == [("h.txt", base)]  # unchanged remotely since the last sync: ours wins
    assert plan.deletes == []  # "d" holds a conflicted file: kept
    forced = plan_sync(local, set(), remote, last, force=True)
    assert forced.conflicts == [] and sorted(forced.uploads) == [("f.txt", remote["f.txt"].sha256), ("h.txt", base)]
    # force overwrites, but does not delete what changed on the server since: it is kept, named
    assert forced.deletes == [] and forced.kept == [{"path": "d/g.txt", "kind": "file",
                                                     "reason": "changed on the server since the last sync"}]


def test_a_file_that_became_a_folder_replaces_the_remote_node_first():
    remote = {"x": rf(1, b"was a file"), "y": rd(2)}
    plan = plan_sync({"x/inner.txt": fs(b"i")}, {"x"}, remote, ours(remote))
    assert plan.replace == [("x", 1)] and plan.mkdirs == ["x"] and plan.uploads == [("x/inner.txt", None)]
    assert plan.deletes == [("y", 2)]
    remote = {"y": rd(2), "y/z": rf(3, b"z")}
    plan = plan_sync({"y": fs(b"now a file")}, set(), remote, ours(remote))
    assert plan.replace == [("y", 2)] and plan.uploads == [("y", None)] and plan.deletes == []


def test_only_what_this_device_synced_and_is_unchanged_since_is_removed_from_the_server():
    remote = {"mine.txt": rf(1, b"m"), "theirs.txt": rf(2, b"t"), "d": rd(3), "d/mine.txt": rf(4, b"dm"),
              "d/sub": rd(5), "d/sub/theirs.txt": rf(6, b"dt"), "new-dir": rd(7), "new-dir/x": rf(8, b"x"),
              "empty": rd(9), "their-empty": rd(10), "orig.txt": rf(11, b"same")}
    last = {"mine.txt": rf(0, b"m").sha256, "d/mine.txt": rf(0, b"dm").sha256, "empty": FOLDER}
    plan = plan_sync({"copy.txt": fs(b"same")}, set(), remote, last)
    # d/sub is known through nothing: neither marked nor holding a synced file
    assert plan.deletes == [("d/mine.txt", 4), ("empty", 9), ("mine.txt", 1)]
    assert [(k["path"], k["reason"]) for k in plan.kept] == [
        ("d/sub", "not uploaded from here"), ("new-dir", "not uploaded from here"),
        ("orig.txt", "not uploaded from here"), ("their-empty", "not uploaded from here"),
        ("theirs.txt", "not uploaded from here")]
    # a rename is not derived from a file that is not ours: the new one is uploaded instead
    assert plan.moves == [] and plan.uploads == [("copy.txt", None)]
    assert plan_sync({}, set(), remote, last, force=True).deletes == plan.deletes
    # a folder known only by a file synced below it (an index written before folders were) is ours
    last2 = {**last, "d/sub/theirs.txt": rf(0, b"dt").sha256}
    assert ("d", 3) in plan_sync({}, set(), remote, last2).deletes


def test_a_kind_change_over_a_node_that_is_not_ours_is_a_conflict_and_both_stay():
    remote = {"x": rf(1, b"their file"), "y": rd(2), "y/z": rf(3, b"z")}
    local = {"x/inner.txt": fs(b"i"), "y": fs(b"now a file"), "w.txt": fs(b"w")}
    plan = plan_sync(local, {"x"}, remote, {})
    assert plan.replace == [] and plan.deletes == [] and plan.mkdirs == []
    assert sorted(c["path"] for c in plan.conflicts) == ["x", "y"]
    assert all("both left as they are" in c["error"] for c in plan.conflicts)
    assert plan.uploads == [("w.txt", None)]  # the rest goes on
    pp = plan_paths(local, {"x"}, remote, {})
    assert pp.blocked == {"x", "y"} and pp.mkdirs == []


def test_a_skipped_local_file_is_neither_deleted_nor_named_as_kept():
    remote = {"link.txt": rf(1, b"l"), "mine.txt": rf(2, b"m"), "theirs.txt": rf(3, b"t")}
    plan = plan_sync({}, set(), remote, {"link.txt": rf(0, b"l").sha256, "mine.txt": rf(0, b"m").sha256})
    plan.kept.append({"path": "pipe", "kind": "file", "reason": "not uploaded from here"})
    keep_skipped(plan, {"link.txt", "pipe"})
    assert plan.deletes == [("mine.txt", 2)] and [k["path"] for k in plan.kept] == ["theirs.txt"]


def _random_trees(rng: random.Random):
    """A remote tree, a local tree and a last-synced map that share paths and contents in
    every way a sync meets: unchanged, edited, renamed (also to two places), deleted, new,
    edited on the server since the last sync, a file that became a folder and back."""
    contents = [bytes([i]) * (i + 1) for i in range(6)]
    names = [f"d{d}/f{f}" for d in range(3) for f in range(4)] + ["top", "d0", "d1/f0/g"]
    remote, local, last, ids = {}, {}, {}, iter(range(1, 1000))
    for rel in rng.sample(names, rng.randint(0, 8)):
        if rel in ("d0",) or rel.endswith("/g"):
            continue
        c = rng.choice(contents)
        remote[rel] = rf(next(ids), c)
        if rng.random() < 0.5:  # synced from here: mostly as it is now, else changed since
            last[rel] = remote[rel].sha256 if rng.random() < 0.7 else rf(0, rng.choice(contents)).sha256
    for rel in rng.sample(names, rng.randint(0, 8)):
        if rel.endswith("/g") and "d1/f0" in local:
            continue
        if any(r.startswith(rel + "/") for r in local) or any(rel.startswith(r + "/") for r in local):
            continue
        local[rel] = fs(rng.choice(contents))
    dirs = {p for rel in local for p in (rel.rsplit("/", 1)[0],) if "/" in rel}
    dirs |= {p.rsplit("/", 1)[0] for p in list(dirs) if "/" in p}
    for rel in list(remote):  # the remote folders the remote files live in
        parts = rel.split("/")[:-1]
        for k in range(1, len(parts) + 1):
            p = "/".join(parts[:k])
            if p in remote and remote[p].kind == "file":
                del remote[rel]
                break
            remote.setdefault(p, rd(next(ids)))
            if rng.random() < 0.3:
                last.setdefault(p, FOLDER)
    return remote, local, dirs, last


@pytest.mark.parametrize("seed", range(300))
def test_an_upload_decided_from_paths_and_one_scan_is_the_one_the_whole_plan_makes(seed):
    """sync commits a file before the rest of the tree is read when plan_paths says the plan
    will surely upload it: that must be exactly what plan_sync then decides, with the same
    If-Match, for every tree; and no kind change or rename target is decided early."""
    rng = random.Random(seed)
    remote, local, dirs, last = _random_trees(rng)
    force = rng.random() < 0.2
    pp = plan_paths(local, dirs, remote, last, force)
    plan = plan_sync(local, dirs, remote, last, force)
    uploads = dict(plan.uploads)
    moved_to = {dst for _, dst, _ in plan.moves}
    assert pp.mkdirs == plan.mkdirs and pp.replace == plan.replace
    # nothing leaves the server that this device did not sync as it is there now
    for top, _ in plan.deletes + plan.replace:
        for rel, e in remote.items():
            if rel == top or rel.startswith(top + "/"):
                assert last.get(rel) == e.sha256 or (e.kind == "folder" and any(
                    k == rel or k.startswith(rel + "/") for k in last)), (rel, plan)
    assert all(last.get(src) == remote[src].sha256 for src, _, _ in plan.moves)
    for rel, scan in local.items():
        sure, etag = pp.sure_upload(rel, scan)
        if sure:
            assert rel in uploads and uploads[rel] == etag, (rel, plan)
            assert not plan.replace and rel not in moved_to
        elif rel in uploads and not plan.replace and not pp.conflicts:
            # left to the whole plan only when it may be a rename target
            assert rel not in remote and (scan.sha256, scan.size) in pp.vanished


def test_a_new_file_with_the_content_of_a_vanished_one_waits_for_the_whole_plan():
    remote = {"old.txt": rf(1, b"same"), "kept.txt": rf(2, b"k")}
    local = {"kept.txt": fs(b"k2"), "new.txt": fs(b"same"), "other.txt": fs(b"o")}
    pp = plan_paths(local, set(), remote, ours(remote), False)
    assert pp.sure_upload("new.txt", local["new.txt"]) == (False, None)   # may be old.txt renamed
    assert pp.sure_upload("other.txt", local["other.txt"]) == (True, None)
    assert pp.sure_upload("kept.txt", local["kept.txt"]) == (True, rf(2, b"k").sha256)
    assert plan_sync(local, set(), remote, ours(remote)).moves == [("old.txt", "new.txt", 1)]


def test_blocks_to_send_only_the_missing_ones_once():
    a = FileScan(30, "A", [("h1", 0, 10), ("h2", 10, 10), ("h1", 20, 10)])
    b = FileScan(20, "B", [("h2", 0, 10), ("h3", 10, 10)])
    assert blocks_to_send([("a", a), ("b", b)], {"h1", "h3"}) == [("h1", "a", 0, 10), ("h3", "b", 10, 10)]
    assert blocks_to_send([("a", a)], set()) == []


def test_group_batches_bounds_bytes_and_counts():
    blocks = [(f"h{i}", "p", i * 10, 10) for i in range(10)]
    groups = group_batches(blocks, max_bytes=25, max_blocks=100)
    assert [len(g) for g in groups] == [2, 2, 2, 2, 2] and sum(groups, []) == blocks
    assert [len(g) for g in group_batches(blocks, max_bytes=10**6, max_blocks=3)] == [3, 3, 3, 1]
    big = [("big", "p", 0, 100), ("s", "p", 100, 1)]
    assert group_batches(big, max_bytes=10) == [[big[0]], [big[1]]]


def test_coalesce_ranges_merges_neighbours_up_to_a_limit():
    assert coalesce_ranges([(20, 10), (0, 10), (10, 10), (50, 5)]) == [(0, 30), (50, 55)]
    assert coalesce_ranges([(0, 10), (10, 10), (20, 10)], max_bytes=20) == [(0, 20), (20, 30)]
    assert coalesce_ranges([]) == []


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 17])
def test_scan_cuts_exactly_as_the_servers_chunker(tmp_path, size):
    conf = {"chunker": "fastcdc", "chunk_min": 64 * 1024, "chunk_avg": 256 * 1024, "chunk_max": 1024 * 1024}
    chunker = make_chunker(conf)
    data = random.Random(size).randbytes(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    scan = scan_file(p, chunker, conf["chunk_min"])
    server = [bytes(v) for v in chunker.chunks(io.BytesIO(data))]
    assert [h for h, _, _ in scan.blocks] == [hashlib.sha256(c).hexdigest() for c in server]
    assert [n for _, _, n in scan.blocks] == [len(c) for c in server]
    assert [off for _, off, _ in scan.blocks] == [sum(map(len, server[:i])) for i in range(len(server))]
    assert scan.sha256 == hashlib.sha256(data).hexdigest() and scan.size == size


def test_index_trusts_only_an_identical_stat(tmp_path):
    idx = Index(tmp_path / "i.sqlite")
    p = tmp_path / "f"
    p.write_bytes(b"one")
    st = os.stat(p)
    idx.store([(str(p), "c", st, fs(b"one"))])
    assert idx.lookup(str(p), "c", st).sha256 == hashlib.sha256(b"one").hexdigest()
    assert idx.lookup(str(p), "other-chunking", st) is None
    p.write_bytes(b"two!")
    assert idx.lookup(str(p), "c", os.stat(p)) is None
    idx.set_synced("srv", [("/d/a", "e1"), ("/d/b", "e2"), ("/x", "e3")])
    idx.set_synced("srv", [("/d", None)])  # forgetting a folder forgets what was below it
    assert idx.synced("srv") == {"/x": "e3"}


def test_credentials_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = save_credentials("http://x", "bd_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "bd_secret" in path.read_text()


def test_durations():
    assert parse_duration("7d") == 7 * 86400 and parse_duration("90") == 90 and parse_duration("2h") == 7200
    for bad in ("", "0", "7y", "-1d"):
        with pytest.raises(ClientError):
            parse_duration(bad)
