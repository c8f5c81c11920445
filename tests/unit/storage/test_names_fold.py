"""Names in a folder (storage/tree.py, storage/names.py): one name in every Unicode normal
form, and no two live names equal under case folding, through every door of storage
(put, mkdir, move, copy, restore, batch commit, batch folders, tus). Names kept from before
the rule stay and fsck reports them; the migration keeps them too. SQLite and MariaDB."""

from __future__ import annotations

import hashlib
import unicodedata

import pytest
import sqlalchemy as sa

from storage import tree
from storage.batch import FRAME, FileEntry, FolderEntry, commit_many, make_folders, put_blocks
from storage.db import MIGRATIONS, head_revision, make_engine, migrate
from storage.errors import Conflict
from storage.fsck import fsck
from storage.models import Node
from storage.names import fold_key, normal
from storage.uploads import Uploads
from tests.conftest import put_bytes, read_all

NFC = "caf\u00e9.txt"
NFD = unicodedata.normalize("NFD", NFC)


def names(drive, user, folder=None) -> list[str]:
    return sorted(n.name for n in drive.list_children(user.id, folder or user.root_id)[0])


def test_the_two_forms_of_a_name_are_one_name(drive, make_user):
    u = make_user()
    assert NFC != NFD
    first = put_bytes(drive, u, NFC, b"one")
    second = put_bytes(drive, u, NFD, b"two")  # a new version of the same file
    assert (second.node.id, second.created) == (first.node.id, False)
    assert names(drive, u) == [NFC]
    assert drive.resolve(u.id, "/" + NFD).id == first.node.id
    assert drive.lookup(u.id, u.root_id, [NFD]).id == first.node.id
    assert read_all(drive, u, first.node.id) == b"two"
    drive.mkdir(u.id, u.root_id, unicodedata.normalize("NFD", "Ré"))
    with pytest.raises(Conflict, match="already exists"):
        drive.mkdir(u.id, u.root_id, "R\u00e9")


def test_names_that_differ_only_in_case_cannot_share_a_folder(drive, make_user):
    u = make_user()
    put_bytes(drive, u, "Report.txt", b"a")
    with pytest.raises(Conflict, match="only in case") as exc:
        put_bytes(drive, u, "report.txt", b"b")
    assert exc.value.details["clashes_with"] == "Report.txt"
    with pytest.raises(Conflict, match="only in case"):
        drive.mkdir(u.id, u.root_id, "REPORT.TXT")
    drive.mkdir(u.id, u.root_id, "Stra\u00dfe")
    with pytest.raises(Conflict, match="only in case"):  # full case folding: ß is ss
        drive.mkdir(u.id, u.root_id, "STRASSE")
    assert names(drive, u) == ["Report.txt", "Stra\u00dfe"]
    # the same name in another folder is another name
    sub = drive.mkdir(u.id, u.root_id, "sub")
    put_bytes(drive, u, "report.txt", b"c", parent=sub.id)
    assert names(drive, u, sub.id) == ["report.txt"]


def test_a_rename_may_change_only_the_case_of_its_own_name(drive, make_user):
    u = make_user()
    f = put_bytes(drive, u, "Report.txt", b"a").node
    put_bytes(drive, u, "other.txt", b"b")
    assert drive.move(u.id, f.id, name="REPORT.txt").name == "REPORT.txt"
    with drive.sm() as s:
        assert s.get(Node, f.id).live_fold == fold_key("report.txt")
    with pytest.raises(Conflict, match="only in case"):
        drive.move(u.id, f.id, name="Other.TXT")
    assert names(drive, u) == ["REPORT.txt", "other.txt"]


def test_move_copy_and_restore_follow_the_rule(drive, make_user):
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a")
    b = drive.mkdir(u.id, u.root_id, "b")
    f = put_bytes(drive, u, "Notes.md", b"x", parent=a.id).node
    put_bytes(drive, u, "notes.MD", b"y", parent=b.id)
    with pytest.raises(Conflict, match="destination folder"):
        drive.move(u.id, f.id, parent_id=b.id)
    with pytest.raises(Conflict, match="only in case"):
        drive.copy(u.id, f.id, b.id)
    # trashed, its name is free; restored next to a case twin, it takes a free name
    drive.delete(u.id, f.id)
    put_bytes(drive, u, "NOTES.md", b"z", parent=a.id)
    assert drive.restore(u.id, f.id).name == "Notes (restored).md"
    assert names(drive, u, a.id) == ["NOTES.md", "Notes (restored).md"]


def _send(up, user, data: bytes) -> tuple[bytes, int]:
    h = hashlib.sha256(data).digest()
    put_blocks(up, user.id, FRAME.pack(h, len(data)) + data)
    return h, len(data)


def test_a_batch_refuses_case_twins_file_by_file(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    put_bytes(drive, u, "Kept.txt", b"old")
    h, n = _send(up, u, b"data")
    res = commit_many(up, u.id, [FileEntry(u.root_id, name, [h], n, h) for name in
                                 ("new.txt", "NEW.txt", "kept.TXT", NFD, NFC)])
    kinds = [type(r).__name__ for r in res]
    assert kinds == ["Committed", "Conflict", "Conflict", "Committed", "Conflict"]
    assert "only in case" in str(res[1]) and res[2].details["clashes_with"] == "Kept.txt"
    assert "twice" in str(res[4])
    assert names(drive, u) == ["Kept.txt", NFC, "new.txt"]
    # two case twins of a name already there: each refused, the batch still lands
    res = commit_many(up, u.id, [FileEntry(u.root_id, name, [h], n, h) for name in ("KEPT.txt", "kept.txt", "x")])
    assert [type(r).__name__ for r in res] == ["Conflict", "Conflict", "Committed"]
    assert {r.details["clashes_with"] for r in res[:2]} == {"Kept.txt"}


def test_batch_folders_refuse_case_twins_and_find_the_other_form(drive, make_user):
    u = make_user()
    drive.mkdir(u.id, u.root_id, "Photos")
    res = make_folders(drive, u.id, [FolderEntry(u.root_id, n) for n in
                                     ("photos", "Music", "music", unicodedata.normalize("NFD", "Ré"), "R\u00e9")])
    assert [type(r).__name__ for r in res] == ["Conflict", "Folder", "Conflict", "Folder", "Folder"]
    assert res[0].details["clashes_with"] == "Photos"
    assert res[3].id == res[4].id and res[3].created and not res[4].created
    assert names(drive, u) == ["Music", "Photos", "R\u00e9"]
    res = make_folders(drive, u.id, [FolderEntry(u.root_id, n) for n in ("PHOTOS", "pHoToS", "new")])
    assert [type(r).__name__ for r in res] == ["Conflict", "Conflict", "Folder"]


def test_a_resumable_upload_is_refused_before_a_byte_is_sent(drive, make_user):
    u = make_user()
    put_bytes(drive, u, "Video.mp4", b"v")
    with pytest.raises(Conflict, match="only in case"):
        Uploads(drive).create(u.id, u.root_id, "video.MP4", 10)
    info = Uploads(drive).create(u.id, u.root_id, unicodedata.normalize("NFD", "vid\u00e9o.mp4"), 3)
    assert info.name == "vid\u00e9o.mp4"


def _legacy_twin(drive, user, name: str) -> int:
    """A live sibling written as code before the case rule could: no fold."""
    with drive.sm() as s, s.begin():
        root = s.get(Node, user.root_id)
        node = Node(owner_id=user.id, parent_id=root.id, kind="folder", name=name, live_name=name,
                    path=tree.child_path(root.path, root.id))
        s.add(node)
        s.flush()
        s.execute(sa.text("UPDATE users SET node_count = node_count + 1 WHERE id = :u"), {"u": user.id})
        return node.id


def test_names_kept_from_before_the_rule_stay_and_fsck_reports_them(drive, make_user):
    u = make_user()
    top = drive.mkdir(u.id, u.root_id, "Docs")
    twin = _legacy_twin(drive, u, "docs")
    assert names(drive, u) == ["Docs", "docs"]
    rep = fsck(drive)
    assert [p.kind for p in rep.problems] == ["name-case"] and f"node {twin}" in str(rep.problems[0])
    # a third name of the same fold is still refused, exactly or in another case
    for n in ("DOCS", "docs"):
        with pytest.raises(Conflict):
            drive.mkdir(u.id, u.root_id, n)
    # both trashed and restored with their folder: both come back
    parent = drive.mkdir(u.id, u.root_id, "p")
    drive.move(u.id, top.id, parent_id=parent.id)
    with pytest.raises(Conflict, match="only in case"):
        drive.move(u.id, twin, parent_id=parent.id)
    drive.move(u.id, twin, name="docs-old")  # renaming one ends the clash
    assert fsck(drive).ok


def test_fold_keys():
    assert fold_key("Report.TXT") == fold_key("report.txt") == fold_key("REPORT.txt")
    assert fold_key("Stra\u00dfe") == fold_key("STRASSE")
    assert fold_key(NFD) == fold_key(NFC.upper())
    assert fold_key("a") != fold_key("\uff41")  # fullwidth a is another letter on Windows too
    assert normal(NFD) == NFC and len(fold_key("x")) == 64


def test_the_migration_keeps_names_that_clash_and_folds_the_oldest(tmp_path):
    from alembic import command
    from alembic.config import Config
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0012")
        c.exec_driver_sql("INSERT INTO users (id, email, password_hash, plan, quota_bytes, used_bytes, is_admin, "
                          "created_at, node_count, pending_bytes) VALUES (1, 'a@x', '', 'free', 1, 0, 0, "
                          "'2026-01-01', 4, 0)")
        for nid, parent, name in ((1, None, None), (2, 1, "Report.txt"), (3, 1, "report.txt"), (4, 1, "other"),
                                  (5, 2, "report.txt")):
            c.exec_driver_sql("INSERT INTO nodes (id, owner_id, parent_id, kind, name, live_name, path, created_at, "
                              "updated_at, changes) VALUES (?, 1, ?, 'folder', ?, ?, ?, '2026-01-01', '2026-01-01', 0)",
                              (nid, parent, name or "", name, "/" if parent is None else f"/1/{'' if parent == 1 else '2/'}"))
    migrate(engine)
    with engine.connect() as c:
        folds = dict(c.exec_driver_sql("SELECT id, live_fold FROM nodes").all())
    assert folds == {1: None, 2: fold_key("report.txt"), 3: None, 4: fold_key("other"), 5: fold_key("report.txt")}
    with engine.begin() as c:  # and back: the column goes, the names stay
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0012")
        columns = [r[1] for r in c.exec_driver_sql("PRAGMA table_info(nodes)")]
        assert "live_fold" not in columns and len(c.exec_driver_sql("SELECT id FROM nodes").all()) == 5
    assert migrate(engine) == head_revision()
    engine.dispose()


def test_live_child_finds_the_file_or_the_clash_in_one_query(drive, make_user):
    u = make_user()
    f = put_bytes(drive, u, NFC, b"one").node
    put_bytes(drive, u, "gone.txt", b"x")
    drive.delete(u.id, drive.resolve(u.id, "/gone.txt").id)
    twin = _legacy_twin(drive, u, "CAF\u00c9.TXT")
    with drive.sm() as s:
        seen = []
        sa.event.listen(s.connection(), "before_cursor_execute", lambda *a: seen.append(a[2]))
        assert tree.live_child(s, u.root_id, NFC).id == f.id  # its own name wins over a legacy twin
        assert tree.live_child(s, u.root_id, NFD).id == f.id
        assert tree.live_child(s, u.root_id, "free.txt") is None
        assert tree.live_child(s, u.root_id, "gone.txt") is None  # a trashed name is free
        with pytest.raises(Conflict, match="only in case") as exc:
            tree.live_child(s, u.root_id, "Caf\u00e9.txt")
        assert exc.value.details["clashes_with"] in (NFC, "CAF\u00c9.TXT")
        assert tree.live_child(s, u.root_id, "CAF\u00c9.TXT").id == twin  # a name without a fold is found too
        assert len(seen) == 6
    drive.move(u.id, twin, name="old")  # ends the clash fsck reports after the test
