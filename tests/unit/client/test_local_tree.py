"""The local tree as sync and bisync list it: links and special files left out, names the
server would refuse or fold together skipped, and the same answer when the base's paths are
given as known (their names are then not checked again)."""

import os

from client.names import NameMap
from client.sync.mirror import Mirror
from storage.names import fold, fold_key


def make_tree(root):
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "x.bin").write_bytes(b"x")
    (root / "sub" / "a.txt").write_bytes(b"a")
    (root / "Case.txt").write_bytes(b"1")
    (root / "case.txt").write_bytes(b"2")
    (root / "K.txt").write_bytes(b"3")
    (root / "\u212a.txt").write_bytes(b"4")  # KELVIN SIGN: K.txt on the server
    (root / "bad ").write_bytes(b"5")        # trailing whitespace: the server refuses it
    (root / "f.blockdrive-tmp").write_bytes(b"6")
    os.symlink(root / "sub", root / "dirlink")
    os.symlink(root / "Case.txt", root / "filelink")
    os.mkfifo(root / "pipe")


def listed(root, known=None):
    skipped, where, stats = [], {}, {}
    files, dirs = Mirror.local_tree(str(root), skipped, NameMap(windows=False), where, stats, known=known)
    return files, dirs, sorted((os.path.relpath(k["path"], root), k["reason"].split(" ")[0]) for k in skipped), \
        where, stats


def test_local_tree_skips_links_specials_refused_names_and_case_twins(tmp_path):
    make_tree(tmp_path)
    files, dirs, skipped, where, stats = listed(tmp_path)
    assert files == ["Case.txt", "K.txt", "sub/a.txt", "sub/deep/x.bin"]
    assert dirs == {"sub", "sub/deep"}
    assert skipped == [("bad ", "not"), ("case.txt", "its"), ("dirlink", "a"), ("filelink", "a"),
                       ("pipe", "not"), ("\u212a.txt", "on")]  # NFC makes it K.txt
    assert where["sub/deep/x.bin"] == str(tmp_path / "sub" / "deep" / "x.bin")
    assert stats[where["sub/a.txt"]].st_ino == os.lstat(tmp_path / "sub" / "a.txt").st_ino


def test_known_paths_give_the_same_tree(tmp_path):
    make_tree(tmp_path)
    known = {"Case.txt", "case.txt", "K.txt", "\u212a.txt", "sub", "sub/deep", "sub/a.txt", "sub/deep/x.bin"}
    assert listed(tmp_path, known)[:3] == listed(tmp_path)[:3]


def test_fold_is_what_fold_key_hashes():
    for a, b in [("Report.txt", "REPORT.TXT"), ("Straße", "STRASSE"), ("K", "\u212a"), ("e\u0301", "\u00c9")]:
        assert fold(a) == fold(b) and fold_key(a) == fold_key(b)
    assert fold("a") != fold("b")
