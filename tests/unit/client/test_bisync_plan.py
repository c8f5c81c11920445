"""The pure three-way merge of bisync: every case of the remote tree now, the local tree now and
the last synced tree, and the conflicted copy's name."""

from __future__ import annotations

from client.bisync.plan import FILE, FOLDER, LocalEntry, conflict_name, match_local, plan
from client.bisync.state import BaseEntry
from client.sync.plan import RemoteEntry

DAY = "2026-12-06"


def bf(nid, sha, ino, size=1, mtime=1):
    return BaseEntry(FILE, nid, sha, size, (size, mtime, ino))


def bd(nid, ino):
    return BaseEntry(FOLDER, nid, stat=(0, 0, ino))


def lf(sha, ino, size=1, mtime=1):
    return LocalEntry(FILE, (size, mtime, ino), sha, size)


def ld(ino):
    return LocalEntry(FOLDER, (0, 0, ino))


def rf(nid, sha, size=1):
    return RemoteEntry(nid, FILE, size, sha)


def rd(nid):
    return RemoteEntry(nid, FOLDER)


def run(base, local, remote, skipped=frozenset()):
    return plan(base, local, remote, "dev", DAY, set(skipped))


def test_nothing_changed_is_an_empty_plan():
    base = {"a": bd(1, 10), "a/f": bf(2, "s", 11)}
    p = run(base, {"a": ld(10), "a/f": lf("s", 11)}, {"a": rd(1), "a/f": rf(2, "s")})
    assert p.empty() and not p.record and not p.forget and not p.kept


def test_creates_on_either_side_are_copied_to_the_other():
    p = run({}, {"d": ld(5), "d/new": lf("n", 6)}, {"r": rd(7), "r/x": rf(8, "x")})
    assert p.mkdir_remote == ["d"] and p.up == [("d/new", None)]
    assert p.mkdir_local == ["r"] and p.down == [("r/x", 8, "x")]


def test_edit_on_one_side_only():
    base = {"f": bf(1, "old", 10), "g": bf(2, "old", 11)}
    p = run(base, {"f": lf("new", 10, mtime=2), "g": lf("old", 11)}, {"f": rf(1, "old"), "g": rf(2, "theirs")})
    assert p.up == [("f", "old")]          # If-Match the version both had
    assert p.down == [("g", 2, "theirs")]
    assert not p.conflicts


def test_touched_file_with_same_content_is_only_recorded():
    base = {"f": bf(1, "s", 10)}
    p = run(base, {"f": lf("s", 10, mtime=9)}, {"f": rf(1, "s")})
    assert p.empty() and p.record == [("f", BaseEntry(FILE, 1, "s", 1, (1, 9, 10)))]


def test_both_edited_differently_is_a_conflict_server_keeps_the_path():
    base = {"notes.md": bf(1, "old", 10)}
    p = run(base, {"notes.md": lf("mine", 10, mtime=2)}, {"notes.md": rf(1, "theirs")})
    assert p.conflicts == [("notes.md", f"notes (conflicted copy dev {DAY}).md", 1, "theirs")]
    assert not p.up and not p.down


def test_both_edited_to_the_same_content_is_recorded_not_a_conflict():
    base = {"f": bf(1, "old", 10)}
    p = run(base, {"f": lf("same", 10, mtime=2)}, {"f": rf(1, "same")})
    assert p.empty() and p.record[0][1].sha256 == "same"


def test_new_on_both_sides_same_content_recorded_different_content_conflict():
    p = run({}, {"a": lf("x", 1), "b": lf("mine", 2)}, {"a": rf(5, "x"), "b": rf(6, "theirs")})
    assert [r for r, _ in p.record] == ["a"]
    assert p.conflicts == [("b", f"b (conflicted copy dev {DAY})", 6, "theirs")]


def test_delete_on_one_side_unchanged_on_the_other_deletes_there():
    base = {"l": bf(1, "s", 10), "r": bf(2, "s", 11)}
    p = run(base, {"r": lf("s", 11)}, {"l": rf(1, "s")})
    assert p.delete_remote == [("l", 1)]
    assert p.delete_local == ["r"]


def test_delete_on_one_side_edited_on_the_other_keeps_the_edit():
    base = {"l": bf(1, "s", 10), "r": bf(2, "s", 11)}
    p = run(base, {"r": lf("edited", 11, mtime=5)}, {"l": rf(1, "edited remotely")})
    assert p.down == [("l", 1, "edited remotely")]
    assert p.up == [("r", None)]
    assert not p.delete_local and not p.delete_remote


def test_deleted_on_both_sides_is_forgotten():
    p = run({"f": bf(1, "s", 10)}, {}, {})
    assert p.empty() and p.forget == ["f"]


def test_local_rename_is_a_remote_move_found_by_inode():
    base = {"a.txt": bf(1, "s", 10)}
    p = run(base, {"b.txt": lf("s", 10)}, {"a.txt": rf(1, "s")})
    assert p.moves == [("remote", "a.txt", "a.txt", "b.txt", 1)]
    assert not p.up and not p.delete_remote


def test_a_new_file_on_a_reused_inode_is_not_a_move():
    base = {"old": bf(1, "s", 10)}
    p = run(base, {"new": lf("other", 10, size=5, mtime=7)}, {"old": rf(1, "s")})
    assert not p.moves and p.delete_remote == [("old", 1)] and p.up == [("new", None)]


def test_local_rename_onto_a_name_the_server_just_gave_a_new_file_keeps_both():
    base = {"e.dat": bf(1, "s", 10)}
    p = run(base, {"f.log": lf("s", 10)}, {"e.dat": rf(1, "s"), "f.log": rf(2, "theirs")})
    copy = f"f (conflicted copy dev {DAY}).log"
    assert p.moves == [("local", "e.dat", "f.log", copy, 1), ("remote", "e.dat", "e.dat", copy, 1)]
    assert p.again and not p.kept  # the server's f.log comes down in the next round


def test_remote_rename_onto_a_new_local_file_sets_the_local_one_aside():
    base = {"a": bf(1, "s", 10)}
    p = run(base, {"a": lf("s", 10), "b": lf("mine", 11)}, {"b": rf(1, "s")})
    assert p.aside == [("b", f"b (conflicted copy dev {DAY})")]
    assert p.moves == [("local", "a", "a", "b", 1)] and p.again


def test_a_new_server_file_where_a_deleted_one_was_comes_next_round():
    base = {"c": bf(1, "s", 10)}
    p = run(base, {"c": lf("s", 10)}, {"c": rf(2, "new")})  # node 1 deleted, node 2 made at its path
    assert p.delete_local == ["c"] and p.again and not p.kept and not p.down


def test_local_move_found_by_content_when_the_inode_changed():
    base = {"a.txt": bf(1, "s", 10)}
    p = run(base, {"d/a.txt": lf("s", 99)}, {"a.txt": rf(1, "s")})
    assert p.moves == [("remote", "a.txt", "a.txt", "d/a.txt", 1)] and not p.up


def test_file_saved_by_replacing_it_keeps_its_path():
    base = {"f": bf(1, "s", 10)}
    p = run(base, {"f": lf("new", 77, mtime=2)}, {"f": rf(1, "s")})
    assert p.up == [("f", "s")] and not p.moves


def test_remote_rename_is_a_local_move():
    base = {"a.txt": bf(1, "s", 10)}
    p = run(base, {"a.txt": lf("s", 10)}, {"z.txt": rf(1, "s")})
    assert p.moves == [("local", "a.txt", "a.txt", "z.txt", 1)] and not p.down and not p.delete_local


def test_folder_move_carries_its_children_in_one_move():
    base = {"d": bd(1, 10), "d/x": bf(2, "x", 11), "d/s": bd(3, 12), "d/s/y": bf(4, "y", 13)}
    local = {"m": ld(20), "m/d2": ld(10), "m/d2/x": lf("x", 11), "m/d2/s": ld(12), "m/d2/s/y": lf("y", 13)}
    p = run(base, local, {"d": rd(1), "d/x": rf(2, "x"), "d/s": rd(3), "d/s/y": rf(4, "y")})
    assert p.moves == [("remote", "d", "d", "m/d2", 1)]
    assert p.mkdir_remote == ["m"] and not p.up and not p.delete_remote


def test_renamed_on_both_sides_the_server_name_wins():
    base = {"a": bf(1, "s", 10)}
    p = run(base, {"mine": lf("s", 10)}, {"theirs": rf(1, "s")})
    assert p.moves == [("local", "a", "mine", "theirs", 1)]


def test_folder_deleted_on_one_side_goes_only_when_nothing_stays_in_it():
    base = {"d": bd(1, 10), "d/f": bf(2, "s", 11), "e": bd(3, 12), "e/g": bf(4, "s", 13)}
    # d deleted remotely, but a new local file is in it: kept, recreated on the server
    local = {"d": ld(10), "d/f": lf("s", 11), "d/new": lf("n", 14), "e": ld(12), "e/g": lf("s", 13)}
    p = run(base, local, {"e": rd(3), "e/g": rf(4, "s")})
    assert "d" not in p.delete_local and p.delete_local == ["d/f"]
    assert "d" in p.mkdir_remote and ("d/new", None) in p.up
    # e deleted locally with everything in it: one delete of the folder on the server
    p = run(base, {"d": ld(10), "d/f": lf("s", 11)}, {"d": rd(1), "d/f": rf(2, "s"), "e": rd(3), "e/g": rf(4, "s")})
    assert p.delete_remote == [("e", 3)]


def test_skipped_local_paths_leave_the_server_alone():
    base = {"link": bf(1, "s", 10)}
    p = run(base, {}, {"link": rf(1, "s"), "other": rf(2, "o")}, skipped={"link"})
    assert not p.delete_remote and p.kept[0][0] == "link"
    assert p.down == [("other", 2, "o")]


def test_kind_clash_on_new_paths_is_kept():
    p = run({}, {"x": ld(1)}, {"x": rf(2, "s")})
    assert p.empty() and p.kept[0][0] == "x"


def test_conflict_name_numbers_taken_names():
    first = f"d/report (conflicted copy dev {DAY}).pdf"
    assert conflict_name("d/report.pdf", "dev", DAY, set()) == first
    assert conflict_name("d/report.pdf", "dev", DAY, {first}) == f"d/report (conflicted copy dev {DAY} 2).pdf"
    assert conflict_name(".bashrc", "dev", DAY, set()) == f".bashrc (conflicted copy dev {DAY})"


def test_match_local_swapped_names():
    base = {"a": bf(1, "sa", 10), "b": bf(2, "sb", 11)}
    assert match_local(base, {"a": lf("sb", 11), "b": lf("sa", 10)}) == {"a": "b", "b": "a"}


def test_a_folder_is_moved_before_a_file_moved_into_it():
    base = {"c": bf(1, "s", 10), "sub": bd(2, 11)}
    p = run(base, {"x y": ld(11), "x y/c": lf("s", 10)}, {"c": rf(1, "s"), "sub": rd(2)})
    assert p.moves == [("remote", "sub", "sub", "x y", 2), ("remote", "c", "c", "x y/c", 1)]


def test_edited_here_while_deleted_there_and_replaced_by_a_new_file_keeps_both():
    base = {"c": bf(1, "s", 10)}
    p = run(base, {"c": lf("mine", 10, mtime=4)}, {"c": rf(2, "new there")})
    assert p.conflicts == [("c", f"c (conflicted copy dev {DAY})", 2, "new there")]
    assert not p.kept and not p.up and not p.again


def test_two_files_renamed_onto_one_name_one_on_each_side_keep_both():
    base = {"f": bf(1, "sf", 10), "g": bf(2, "sg", 11)}
    p = run(base, {"c": lf("sf", 10), "g": lf("sg", 11)}, {"f": rf(1, "sf"), "c": rf(2, "sg")})
    targets = sorted(t for _, _, _, t, _ in p.moves)
    assert targets[0] == "c" and targets[-1] == f"c (conflicted copy dev {DAY})"
    assert not p.up and not p.down and not p.delete_local and not p.delete_remote


def test_edited_here_while_deleted_there_and_another_moved_to_its_name_sets_it_aside():
    base = {"c": bf(1, "sc", 10), "r": bf(2, "sr", 11)}
    p = run(base, {"c": lf("mine", 10, mtime=4), "r": lf("sr", 11)}, {"c": rf(2, "sr")})
    assert p.aside == [("c", f"c (conflicted copy dev {DAY})")]
    assert p.moves == [("local", "r", "r", "c", 2)] and not p.up and p.again
