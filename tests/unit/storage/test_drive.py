import io

import pytest
import sqlalchemy as sa

from storage import clock
from storage.errors import (Conflict, Forbidden, IntegrityError, InvalidInput, InvalidName, NotFound,
                            PreconditionFailed, QuotaExceeded)
from storage.models import Block, Pack, User, VersionBlock
from tests.conftest import put_bytes, rand, read_all


def stored_bytes(drive):
    with drive.sm() as s:
        return s.execute(sa.select(sa.func.coalesce(sa.func.sum(Block.stored_size), 0))).scalar_one()


def pack_bytes(drive):
    return sum(size for _k, size in drive.blocks.hot.list("packs"))


def count(drive, model):
    with drive.sm() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def test_put_and_read_back(drive, make_user):
    u = make_user()
    data = rand(1_500_000, 1)
    res = put_bytes(drive, u, "a.bin", data)
    assert res.created and res.node.size == len(data) and res.node.kind == "file"
    assert read_all(drive, u, res.node.id) == data
    assert drive.account(u.id).used_bytes == len(data)


def test_empty_file(drive, make_user):
    u = make_user()
    res = put_bytes(drive, u, "empty", b"")
    assert res.node.size == 0
    assert read_all(drive, u, res.node.id) == b""


def test_byte_ranges(drive, make_user):
    u = make_user()
    data = rand(700_000, 2)
    nid = put_bytes(drive, u, "r.bin", data).node.id
    for start, end in [(0, 1), (0, 700_000), (65_000, 200_001), (699_999, 700_000), (300_000, 300_000)]:
        assert read_all(drive, u, nid, start=start, end=end) == data[start:end]
    with pytest.raises(InvalidInput):
        read_all(drive, u, nid, start=800_000)


def test_dedup_across_users_stores_once(drive, make_user):
    """B's upload of content A stores is written like a fresh one (its time must not tell
    that A has it): one row per block, A's, and B's copies dead pack bytes from the start."""
    a, b = make_user(), make_user()
    data = rand(2_000_000, 3)
    ra = put_bytes(drive, a, "mine.bin", data)
    with drive.sm() as s:
        rows_a = dict(s.execute(sa.select(Block.id, Block.pack_id)).all())
        packs_a = set(s.execute(sa.select(Pack.id)).scalars())
    before = pack_bytes(drive)
    rb = put_bytes(drive, b, "theirs.bin", data)
    assert rb.new_bytes > 0 and rb.new_to_caller == len(data)
    assert pack_bytes(drive) - before >= rb.new_bytes  # a second copy of every block
    assert read_all(drive, b, rb.node.id) == data
    with drive.sm() as s:
        assert dict(s.execute(sa.select(Block.id, Block.pack_id)).all()) == rows_a  # A's rows, once
        assert set(s.execute(sa.select(Block.refcount)).scalars()) == {2}
        copies = s.execute(sa.select(Pack).where(Pack.id.not_in(packs_a), Pack.state == "sealed")).scalars().all()
    assert copies and all(p.live_bytes == 0 for p in copies)  # compact reclaims them
    assert sorted(_records(drive).values()) == [2] * len(rows_a)
    # each user pays for their own logical bytes
    assert drive.account(a.id).used_bytes == drive.account(b.id).used_bytes == len(data)
    assert ra.node.sha256 == rb.node.sha256
    # a block B now has is not written again
    before = pack_bytes(drive)
    again = put_bytes(drive, b, "again.bin", data)
    assert again.new_bytes == 0 and again.new_to_caller == 0
    assert pack_bytes(drive) == before


def _records(drive) -> dict[bytes, int]:
    """How many records of each block the pack files on the backend hold."""
    from storage.fsck import index_from_packs
    return {bid: len(found) for bid, found in index_from_packs(drive.blocks.hot).items()}


def test_repeated_content_within_one_file(drive, make_user):
    u = make_user()
    piece = rand(300_000, 4)
    data = piece * 8
    res = put_bytes(drive, u, "rep.bin", data)
    assert res.new_bytes < len(data) // 3
    assert read_all(drive, u, res.node.id) == data


def test_new_version_and_version_history(drive, make_user):
    u = make_user()
    v1, v2 = rand(400_000, 5), rand(500_000, 6)
    r1 = put_bytes(drive, u, "doc", v1)
    r2 = put_bytes(drive, u, "doc", v2)
    assert not r2.created and r2.node.id == r1.node.id
    assert read_all(drive, u, r1.node.id) == v2
    assert read_all(drive, u, r1.node.id, version_id=r1.version_id) == v1
    vs = drive.versions(u.id, r1.node.id)
    assert [v.id for v in vs] == [r2.version_id, r1.version_id]
    assert [v.current for v in vs] == [True, False]
    assert drive.account(u.id).used_bytes == len(v1) + len(v2)  # old versions count too
    r3 = drive.restore_version(u.id, r1.node.id, r1.version_id)
    assert read_all(drive, u, r1.node.id) == v1
    assert drive.account(u.id).used_bytes == 2 * len(v1) + len(v2)
    assert len(drive.versions(u.id, r1.node.id)) == 3 and r3.version_id not in (r1.version_id, r2.version_id)


def test_optimistic_concurrency(drive, make_user):
    u = make_user()
    r1 = put_bytes(drive, u, "f", b"one")
    with pytest.raises(PreconditionFailed):
        put_bytes(drive, u, "f", b"two", if_match=r1.version_id + 100)
    with pytest.raises(PreconditionFailed):
        put_bytes(drive, u, "f", b"two", if_none_match=True)
    r2 = put_bytes(drive, u, "f", b"two", if_match=r1.version_id)
    r3 = put_bytes(drive, u, "f", b"three", if_match=r2.node.sha256)
    assert read_all(drive, u, r3.node.id) == b"three"
    with pytest.raises(PreconditionFailed):
        put_bytes(drive, u, "new", b"x", if_match=1)


def test_copy_references_the_same_blocks(drive, make_user):
    u = make_user()
    data = rand(1_200_000, 7)
    src = put_bytes(drive, u, "src.bin", data)
    folder = drive.mkdir(u.id, u.root_id, "copies")
    before_packs, before_blocks = pack_bytes(drive), count(drive, Block)
    cp = drive.copy(u.id, src.node.id, folder.id, "dup.bin")
    assert cp.id != src.node.id and cp.parent_id == folder.id
    assert pack_bytes(drive) == before_packs and count(drive, Block) == before_blocks
    assert read_all(drive, u, cp.id) == data
    assert drive.account(u.id).used_bytes == 2 * len(data)
    # a folder copies recursively
    sub = drive.mkdir(u.id, folder.id, "sub")
    put_bytes(drive, u, "inner", b"inner bytes", parent=sub.id)
    fcopy = drive.copy(u.id, folder.id, u.root_id, "copies2")
    assert drive.resolve(u.id, "/copies2/sub/inner").size == len(b"inner bytes")
    with pytest.raises(Conflict):
        drive.copy(u.id, folder.id, sub.id)
    assert fcopy.kind == "folder"


def test_folders_listing_paging_and_sorting(drive, make_user):
    u = make_user()
    f = drive.mkdir(u.id, u.root_id, "box")
    names = [f"n{i:02d}" for i in range(25)]
    for i, n in enumerate(names):
        put_bytes(drive, u, n, b"x" * (100 - i), parent=f.id)
    drive.mkdir(u.id, f.id, "zdir")
    got, cursor = [], None
    while True:
        page, cursor = drive.list_children(u.id, f.id, limit=7, cursor=cursor)
        got += page
        if cursor is None:
            break
    assert [n.name for n in got] == names + ["zdir"]
    back, cursor = [], None
    while True:  # by name, newest-first pages resume after the last name seen
        page, cursor = drive.list_children(u.id, f.id, desc=True, limit=4, cursor=cursor)
        back += page
        if cursor is None:
            break
    assert [n.name for n in back] == ["zdir"] + names[::-1]
    by_size, _ = drive.list_children(u.id, f.id, sort="size", limit=3)
    assert [n.name for n in by_size] == ["zdir", "n24", "n23"]
    desc, cur = drive.list_children(u.id, f.id, sort="size", desc=True, limit=2)
    desc2, _ = drive.list_children(u.id, f.id, sort="size", desc=True, limit=2, cursor=cur)
    assert [n.name for n in desc + desc2] == ["n00", "n01", "n02", "n03"]
    with pytest.raises(InvalidInput):
        drive.list_children(u.id, f.id, cursor=cur)  # a size cursor used for a name listing
    with pytest.raises(InvalidInput):
        drive.list_children(u.id, f.id, sort="colour")


def test_resolve_and_mkdirs(drive, make_user):
    u = make_user()
    d = drive.mkdirs(u.id, "/a/b/c")
    assert drive.resolve(u.id, "/a/b/c").id == d.id
    assert drive.resolve(u.id, "/").id == u.root_id
    with pytest.raises(NotFound):
        drive.resolve(u.id, "/a/x")
    put_bytes(drive, u, "file", b"1", parent=d.id)
    with pytest.raises(Conflict):
        drive.mkdirs(u.id, "/a/b/c/file/deeper")


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "nul\x00here", "x" * 256, "é" * 128,
                                  "evil\u202egpj.exe", " lead", "tab\tname"])
def test_invalid_names_rejected(drive, make_user, name):
    u = make_user()
    with pytest.raises(InvalidName):
        drive.mkdir(u.id, u.root_id, name)
    with pytest.raises(InvalidName):
        put_bytes(drive, u, name, b"data")
    assert drive.list_children(u.id, u.root_id)[0] == []


def test_long_names_count_bytes_not_characters(drive, make_user):
    u = make_user()
    drive.mkdir(u.id, u.root_id, "é" * 127)  # 254 bytes
    drive.mkdir(u.id, u.root_id, "x" * 255)


def test_name_clash_is_a_conflict(drive, make_user):
    u = make_user()
    drive.mkdir(u.id, u.root_id, "same")
    with pytest.raises(Conflict):
        drive.mkdir(u.id, u.root_id, "same")
    with pytest.raises(Conflict):
        put_bytes(drive, u, "same", b"file over folder")
    put_bytes(drive, u, "file", b"x")
    with pytest.raises(Conflict):
        drive.mkdir(u.id, u.root_id, "file")


def test_rename_and_move_without_cycles(drive, make_user):
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a")
    b = drive.mkdir(u.id, a.id, "b")
    f = put_bytes(drive, u, "f.txt", b"hello", parent=b.id).node
    moved = drive.move(u.id, f.id, name="g.txt", parent_id=a.id)
    assert moved.parent_id == a.id and moved.name == "g.txt"
    assert drive.resolve(u.id, "/a/g.txt").id == f.id
    with pytest.raises(Conflict):
        drive.move(u.id, a.id, parent_id=b.id)
    with pytest.raises(Conflict):
        drive.move(u.id, a.id, parent_id=a.id)
    drive.mkdir(u.id, a.id, "taken")
    with pytest.raises(Conflict):
        drive.move(u.id, f.id, name="taken")
    with pytest.raises(InvalidInput):
        drive.move(u.id, u.root_id, name="root")
    with pytest.raises(InvalidName):
        drive.move(u.id, f.id, name="../x")


def test_trash_restore_and_purge(drive, make_user):
    u = make_user()
    folder = drive.mkdir(u.id, u.root_id, "proj")
    data = rand(600_000, 8)
    f = put_bytes(drive, u, "big.bin", data, parent=folder.id).node
    drive.delete(u.id, folder.id)
    assert drive.list_children(u.id, u.root_id)[0] == []
    with pytest.raises(NotFound):
        drive.get(u.id, f.id)
    assert [n.id for n in drive.list_trash(u.id)] == [folder.id]
    assert drive.account(u.id).used_bytes == len(data)  # trash still counts
    with pytest.raises(InvalidInput):
        drive.restore(u.id, f.id)  # went with its folder
    # the name is taken meanwhile: the restore gets a suffix
    drive.mkdir(u.id, u.root_id, "proj")
    back = drive.restore(u.id, folder.id)
    assert back.name == "proj (restored)"
    assert read_all(drive, u, f.id) == data
    drive.delete(u.id, back.id)
    assert drive.purge(u.id, back.id) == 1
    assert drive.list_trash(u.id) == []
    assert drive.account(u.id).used_bytes == 0
    with drive.sm() as s:
        assert set(s.execute(sa.select(Block.refcount)).scalars()) == {0}  # left for GC
        assert s.execute(sa.select(sa.func.count()).select_from(VersionBlock)).scalar_one() == 0


def test_purge_expired_trash_respects_retention(drive, make_user):
    u = make_user()
    a = put_bytes(drive, u, "old", b"old bytes").node
    drive.delete(u.id, a.id)
    clock.advance(10 * 86400)
    b = put_bytes(drive, u, "new", b"new bytes").node
    drive.delete(u.id, b.id)
    assert drive.purge_expired_trash(clock.now() - __import__("datetime").timedelta(days=5)) == 1
    assert [n.id for n in drive.list_trash(u.id)] == [b.id]


def test_quota_exceeded_charges_nothing_and_references_nothing(drive, make_user):
    u = make_user()
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == u.id).values(quota_bytes=1_000_000))
    put_bytes(drive, u, "fits", rand(600_000, 10))
    blocks_before = count(drive, Block)
    with pytest.raises(QuotaExceeded) as err:
        put_bytes(drive, u, "too-big", rand(600_000, 11))
    # without a size the upload stops as soon as it passes the quota: "needed" is a lower bound
    assert (err.value.details["used"], err.value.details["quota"]) == (600_000, 1_000_000)
    assert 400_000 < err.value.details["needed"] <= 600_000
    with pytest.raises(QuotaExceeded) as err:  # known up front from the size hint: nothing read
        put_bytes(drive, u, "too-big", rand(600_000, 11), size_hint=600_000)
    assert err.value.details == {"used": 600_000, "quota": 1_000_000, "needed": 600_000, "pending": 0,
                                 "old_versions": 0, "trash": 0}
    assert drive.account(u.id).used_bytes == 600_000
    assert count(drive, Block) == blocks_before
    with pytest.raises(NotFound):
        drive.resolve(u.id, "/too-big")
    with drive.sm() as s:  # whatever was written sits in packs nothing points to
        assert s.execute(sa.select(sa.func.count()).select_from(Pack).where(
            Pack.state == "open", ~sa.exists().where(Block.pack_id == Pack.id))).scalar_one() <= 1
    # a new version is charged whole: the version it replaces is kept as an old version
    put_bytes(drive, u, "fits", rand(300_000, 12))
    assert drive.account(u.id).used_bytes == 900_000


def test_strangers_see_nothing(drive, make_user):
    a, b = make_user(), make_user()
    f = put_bytes(drive, a, "secret", b"top secret").node
    for call in (lambda: drive.get(b.id, f.id), lambda: read_all(drive, b, f.id),
                 lambda: drive.list_children(b.id, a.root_id), lambda: drive.delete(b.id, f.id),
                 lambda: drive.move(b.id, f.id, name="x"), lambda: drive.versions(b.id, f.id),
                 lambda: put_bytes(drive, b, "plant", b"x", parent=a.root_id),
                 lambda: drive.copy(b.id, f.id, b.root_id)):
        with pytest.raises(NotFound):
            call()


def test_shared_viewer_reads_but_cannot_write(drive, make_user):
    from storage.models import Share
    a, b = make_user(), make_user()
    folder = drive.mkdir(a.id, a.root_id, "shared")
    f = put_bytes(drive, a, "doc", b"shared bytes", parent=folder.id).node
    with drive.sm() as s, s.begin():
        s.add(Share(node_id=folder.id, grantee_id=b.id, role="viewer", granted_by=a.id))
    assert read_all(drive, b, f.id) == b"shared bytes"  # inherited from the folder
    assert drive.get(b.id, f.id).role == "viewer"
    with pytest.raises(Forbidden):
        put_bytes(drive, b, "doc", b"overwrite", parent=folder.id)
    with pytest.raises(Forbidden):
        drive.delete(b.id, f.id)


def test_corrupt_pack_fails_the_read_naming_pack_and_block(drive, make_user):
    u = make_user()
    data = rand(300_000, 13)
    nid = put_bytes(drive, u, "c.bin", data).node.id
    with drive.sm() as s:
        blk = s.execute(sa.select(Block)).scalars().first()
        pack = s.get(Pack, blk.pack_id)
    key = drive.blocks.hot.key_for(pack.url)
    path = drive.blocks.hot._path(key)
    with open(path, "r+b") as fh:
        fh.seek(blk.offset_in_pack + 48 + 10)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(IntegrityError) as err:
        read_all(drive, u, nid)
    assert key in str(err.value) and blk.id.hex() in str(err.value)
    from storage.fsck import fsck
    rep = fsck(drive)
    assert [p.kind for p in rep.problems] == ["corrupt-block"]
    drive.skip_fsck = True


def test_missing_block_row_is_an_integrity_error_not_short_data(drive, make_user):
    u = make_user()
    nid = put_bytes(drive, u, "m.bin", rand(300_000, 14)).node.id
    with drive.sm() as s, s.begin():
        s.execute(sa.delete(Block).where(Block.id == s.execute(sa.select(VersionBlock.block_id)).scalars().first()))
    with pytest.raises(IntegrityError):
        read_all(drive, u, nid)
    from storage.fsck import fsck
    assert {p.kind for p in fsck(drive).problems} >= {"missing-block"}
    drive.skip_fsck = True


def test_fsck_reports_refcount_and_usage_drift(drive, make_user):
    from storage.fsck import fsck
    u = make_user()
    put_bytes(drive, u, "x", rand(100_000, 15))
    with drive.sm() as s, s.begin():
        s.execute(sa.update(Block).values(refcount=Block.refcount + 1))
        s.execute(sa.update(User).values(used_bytes=User.used_bytes + 5))
    kinds = [p.kind for p in fsck(drive).problems]
    assert "refcount" in kinds and "usage" in kinds
    drive.skip_fsck = True


def test_same_file_twice_adds_no_pack_bytes(drive, make_user):
    u = make_user()
    data = rand(3_000_000, 16)
    put_bytes(drive, u, "one", data)
    before = pack_bytes(drive)
    put_bytes(drive, u, "two", data)
    assert pack_bytes(drive) == before


def test_packs_roll_over_for_large_uploads(tmp_path, db_engine):
    from storage.drive import Drive
    from tests.conftest import make_config
    d = Drive(make_config(tmp_path, pack_max_bytes=512 * 1024), engine=db_engine)
    u, _ = d.create_user("roll@example.com", "password123")
    data = rand(3_000_000, 17)
    nid = d.put(u.id, u.root_id, "big", io.BytesIO(data)).node.id
    with d.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Pack).where(Pack.state == "sealed")).scalar_one() >= 5
    assert b"".join(d.open(u.id, nid)[2]) == data


def test_a_counted_put_adds_its_traffic_with_its_commit_and_a_refused_one_adds_none(drive, make_user):
    from storage.models import TrafficDaily
    u = make_user()
    drive.put(u.id, u.root_id, "a.bin", io.BytesIO(b"12345"), count_traffic=True)
    put_bytes(drive, u, "uncounted.bin", b"678")  # other doors count on their own

    def rival() -> None:  # the name is taken between the put's pre-check and its commit
        drive.hooks.pop("put:before_commit")
        put_bytes(drive, u, "b.bin", b"first")
    drive.hooks["put:before_commit"] = rival
    with pytest.raises(PreconditionFailed):
        drive.put(u.id, u.root_id, "b.bin", io.BytesIO(b"second"), if_none_match=True, count_traffic=True)
    with drive.sm() as s:
        rows = [(r.user_id, r.uploads, r.bytes_in) for r in s.execute(sa.select(TrafficDaily)).scalars()]
    assert rows == [(u.id, 1, 5)]


def test_a_small_file_skips_its_write_only_for_an_uploader_who_has_it(drive, make_user):
    """A stream declared shorter than one inline block is asked about in the folder check's
    own read: the same rule as a long one (only the uploader's own blocks skip the write)."""
    a, b = make_user(), make_user()
    data = rand(4096, 7)
    assert len(data) < drive.blocks.inline_bytes
    first = put_bytes(drive, a, "a.bin", data, size_hint=len(data))
    assert first.new_bytes > 0 and first.new_to_caller == len(data)
    before = pack_bytes(drive)
    theirs = put_bytes(drive, b, "b.bin", data, size_hint=len(data))  # A has it, B does not: written again
    assert theirs.new_bytes > 0 and theirs.new_to_caller == len(data) and pack_bytes(drive) > before
    before = pack_bytes(drive)
    begins: list[str] = []
    listen = (drive.engine, "before_cursor_execute",
              lambda _c, _cur, stmt, *_: begins.append(stmt) if stmt.startswith("BEGIN") else None)
    sa.event.listen(*listen)
    try:
        again = put_bytes(drive, b, "c.bin", data, size_hint=len(data))
        declared = len(begins)
        undeclared = put_bytes(drive, b, "d.bin", data)  # a size it did not declare: asked as before
    finally:
        sa.event.remove(*listen)
    for res in (again, undeclared):
        assert res.new_bytes == 0 and res.new_to_caller == 0 and read_all(drive, b, res.node.id) == data
    assert pack_bytes(drive) == before
    if drive.engine.dialect.name == "sqlite":  # (pymysql begins without a statement to count)
        assert declared == len(begins) - declared - 1  # the lookup in the folder check's read: one less
    assert put_bytes(drive, b, "empty.bin", b"", size_hint=0).node.size == 0


def test_a_long_upload_refused_by_its_folder_reads_no_byte(drive, make_user):
    owner, other = make_user(), make_user()

    class Untouched(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise AssertionError("a byte was read")
    with pytest.raises(NotFound):
        drive.put(other.id, owner.root_id, "x.bin", Untouched(), size_hint=drive.blocks.inline_bytes)
    # a short one is looked at first (it may be one block), then refused all the same
    with pytest.raises(NotFound):
        drive.put(other.id, owner.root_id, "x.bin", io.BytesIO(b"short"), size_hint=5)
    assert drive.account(other.id).used_bytes == 0
