"""The shared open pack: small blocks from every route go into one pack per process, durable
before they commit, readable while open, sealed by size, idleness and at close, recovered
after a crash; and a block the caller does not own is written even when the server has it."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from storage import clock, crashpoints
from storage import maintenance as m
from storage import pack as packfmt
from storage.batch import FRAME, put_blocks
from storage.drive import Drive
from storage.errors import NotFound, RetryLater
from storage.fsck import fsck, index_from_packs
from storage.models import Block, Pack, UploadPin
from storage.uploads import Uploads
from tests.conftest import make_config, put_bytes, rand, read_all


def _pack_files(drive) -> list[str]:
    return sorted(k for k, _ in drive.blocks.hot.list("packs") if k.endswith(".pack"))


def _records(drive) -> int:
    return sum(len(v) for v in index_from_packs(drive.blocks.hot).values())


def _tiny(i: int) -> bytes:
    return i.to_bytes(4, "big")


def _put(up, user, data: bytes) -> bool:
    return up.put_block(user.id, hashlib.sha256(data).hexdigest(), data)


@pytest.fixture
def shared_drive(tmp_path, db_engine):
    """A drive with the shared pack on and the options a test asks for."""
    made = []

    def make(**storage):
        clock.reset()
        d = Drive(make_config(tmp_path, **storage), engine=db_engine)
        made.append(d)
        return d
    yield make
    for d in made:
        d.blocks.close()
    clock.reset()
    if made:
        rep = fsck(made[-1], deep=True)
        assert rep.ok, "\n".join(map(str, rep.problems))


def test_many_tiny_blocks_make_one_pack_file_and_read_back(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    blocks = [_tiny(i) for i in range(300)]
    for b in blocks:
        assert _put(up, u, b) is True
    # before: one pack file (and row) per block
    assert len(_pack_files(drive)) == 1
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Pack)).scalar() == 1
        assert s.execute(sa.select(Pack.state)).scalar() == "open"
    # readable while the pack is open, from another store (another process) too
    other = Drive(drive.config, engine=drive.engine)
    for b in blocks[::37]:
        assert other.blocks.read_block(hashlib.sha256(b).digest()) == b
    rep = fsck(drive, deep=True)  # an open pack blocks point to is no problem
    assert rep.ok, rep.problems
    drive.blocks.close()
    with drive.sm() as s:
        p = s.execute(sa.select(Pack)).scalar_one()
    assert p.state == "sealed"
    assert p.size == drive.blocks.hot.size(drive.blocks.pack_key(p.id))
    assert p.live_bytes == sum(packfmt.RECORD_HEADER + len(b) for b in blocks)
    tail = drive.blocks.hot.read_range(drive.blocks.pack_key(p.id), p.size - packfmt.TRAILER_SIZE,
                                       packfmt.TRAILER_SIZE)
    assert packfmt.read_trailer(tail)[0] == len(blocks)  # the footer indexes every record
    for b in blocks:
        assert drive.blocks.read_block(hashlib.sha256(b).digest()) == b


def test_every_route_shares_the_pack(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _put(up, u, b"block route")
    put_blocks(up, u.id, b"".join(FRAME.pack(hashlib.sha256(x).digest(), len(x)) + x for x in (b"b1", b"b2")))
    f = put_bytes(drive, u, "small.txt", b"a small file")
    sess = up.create(u.id, u.root_id, "tus.txt", 10)
    import io
    up.append(u.id, sess.id, 0, io.BytesIO(b"0123456789"))
    assert len(_pack_files(drive)) == 1
    assert read_all(drive, u, f.node.id) == b"a small file"
    assert read_all(drive, u, drive.resolve(u.id, "/tus.txt").id) == b"0123456789"
    with drive.sm() as s:  # the reserved rows of the PUT were given up, not left open
        states = sorted(s.execute(sa.select(Pack.state)).scalars())
    assert states.count("open") == 1


def test_a_big_upload_still_writes_its_own_pack(shared_drive):
    drive = shared_drive(shared_pack_request_bytes=64 * 1024)
    u, _ = drive.create_user("big@example.com", "password123")
    put_bytes(drive, u, "tiny", b"x")
    data = rand(600_000, 1)
    f = put_bytes(drive, u, "big", data)
    assert len(_pack_files(drive)) == 2
    with drive.sm() as s:
        # (the tiny PUT's reserved row, never written, is "deleted")
        assert sorted(s.execute(sa.select(Pack.state).where(Pack.state != "deleted")).scalars()) == ["open", "sealed"]
    assert read_all(drive, u, f.node.id) == data


def test_concurrent_requests_share_the_pack_and_every_block_is_durable(drive, make_user):
    users = [make_user() for _ in range(4)]
    up = Uploads(drive)
    work = [(users[i % 4], _tiny(i)) for i in range(400)]
    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(lambda w: _put(up, *w), work))
    assert len(_pack_files(drive)) == 1
    for _, b in work:
        assert drive.blocks.read_block(hashlib.sha256(b).digest()) == b


def test_at_the_shared_sync_point_the_records_are_on_disk_and_nothing_points_to_them(shared_drive):
    drive = shared_drive()
    u, _ = drive.create_user("s@example.com", "password123")
    put_bytes(drive, u, "first.bin", rand(30_000, 1))  # committed into the pack the next one shares
    data = rand(40_000, 2)
    seen = {}

    def at(point):
        def look():
            with drive.sm() as s:
                seen[point] = (_records(drive), s.execute(sa.select(sa.func.count()).select_from(Block)).scalar())
            if point == "shared:synced":
                raise RuntimeError("killed between the shared fsync and the commit")
        return look
    crashpoints.HOOKS.update({p: at(p) for p in ("shared:appended", "shared:synced")})
    try:
        with pytest.raises(RuntimeError):
            put_bytes(drive, u, "second.bin", data)
    finally:
        for p in ("shared:appended", "shared:synced"):
            crashpoints.HOOKS.pop(p)
    records, rows = seen["shared:synced"]
    assert records == rows + 1  # the new record is in the file; no blocks row names it
    assert seen["shared:appended"][1] == rows
    with pytest.raises(NotFound):
        drive.resolve(u.id, "/second.bin")
    node = put_bytes(drive, u, "second.bin", data).node  # the client's retry
    assert read_all(drive, u, node.id) == data
    assert len(_pack_files(drive)) == 1


def test_sealed_at_target_size_and_when_idle(shared_drive):
    drive = shared_drive(shared_pack_target_bytes=4096, shared_pack_idle_seconds=0.3)
    u, _ = drive.create_user("t@example.com", "password123")
    up = Uploads(drive)
    for i in range(200):  # 52 bytes a record: about 80 records a pack
        _put(up, u, _tiny(i))
    with drive.sm() as s:
        states = sorted(s.execute(sa.select(Pack.state)).scalars())
    assert states.count("sealed") >= 2 and states.count("open") <= 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the idle pack is sealed by the watcher, not by us
        with drive.sm() as s:
            if not s.execute(sa.select(sa.func.count()).select_from(Pack).where(Pack.state == "open")).scalar():
                break
        time.sleep(0.1)
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Pack).where(Pack.state == "open")).scalar() == 0
        packs = s.execute(sa.select(Pack)).scalars().all()
    for p in packs:
        assert p.size == drive.blocks.hot.size(drive.blocks.pack_key(p.id))
    for i in range(200):
        assert drive.blocks.read_block(hashlib.sha256(_tiny(i)).digest()) == _tiny(i)


def test_a_pack_left_open_by_a_dead_process_is_recovered_not_retired(shared_drive):
    drive = shared_drive()
    u, _ = drive.create_user("c@example.com", "password123")
    up = Uploads(drive)
    blocks = [_tiny(i) for i in range(50)]
    for b in blocks:
        _put(up, u, b)
    f = put_bytes(drive, u, "kept.txt", b"kept in the shared pack")
    # the process dies: its pack is never sealed (no footer), the next process starts afresh
    crashed = drive.blocks.shared.current_id
    drive.blocks.shared._cur = None
    old_key = drive.blocks.pack_key(crashed)
    assert packfmt.read_trailer(drive.blocks.hot.read(old_key)) is None
    after = shared_drive()
    assert fsck(after, deep=True).ok
    # younger than the grace: left alone
    assert m.abandon_open_packs(after.sm, after.blocks.packs, clock.now() - dt.timedelta(seconds=3600)) == []
    clock.advance(7200)
    assert m.abandon_open_packs(after.sm, after.blocks.packs, clock.now() - dt.timedelta(seconds=3600)) == [crashed]
    with after.sm() as s:
        assert s.get(Pack, crashed).state == "retiring"
        (new,) = s.execute(sa.select(Block.pack_id).distinct()).scalars().all()
        assert s.get(Pack, new).state == "sealed"
    assert packfmt.read_trailer(after.blocks.hot.read(after.blocks.pack_key(new))) is not None
    for b in blocks:
        assert after.blocks.read_block(hashlib.sha256(b).digest()) == b
    assert read_all(after, u, f.node.id) == b"kept in the shared pack"
    clock.advance(7200)
    assert m.delete_retired_packs(after.sm, after.blocks.packs, clock.now())["packs_deleted"] == 1
    assert not after.blocks.hot.exists(old_key)


def test_a_commit_to_a_shared_pack_gc_gave_up_on_fails_and_the_retry_succeeds(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _put(up, u, b"first")
    gone = drive.blocks.shared.current_id

    def give_up():
        clock.advance(10)
        with drive.sm() as s, s.begin():  # as compact's retire of a pack no block points to yet
            s.execute(sa.update(Pack).where(Pack.id == gone).values(state="retiring", retired_at=clock.now()))
    drive.hooks["put:before_commit"] = give_up
    with pytest.raises(RetryLater):
        put_bytes(drive, u, "slow.txt", b"slow small file")
    drive.hooks.pop("put:before_commit")
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Block).where(Block.pack_id == gone)).scalar() == 1
        # put the first block back in a live pack so the store stays consistent for fsck
        s.execute(sa.update(Pack).where(Pack.id == gone).values(state="open"))
        s.commit()
    f = put_bytes(drive, u, "slow.txt", b"slow small file")
    assert drive.blocks.shared.current_id != gone
    assert read_all(drive, u, f.node.id) == b"slow small file"


def test_a_block_another_user_stores_is_written_again(drive, make_user):
    """No shortcut for content someone else has: the second user's PUT appends a record,
    the block row keeps pointing at the first copy, refcounts and pins stay right and
    fsck (run by the fixture) finds nothing wrong with the dead copy."""
    a, b = make_user(), make_user()
    up = Uploads(drive)
    data = rand(3000, 7)
    bid = hashlib.sha256(data).digest()
    assert _put(up, a, data) is True
    with drive.sm() as s:
        first = s.execute(sa.select(Block.pack_id, Block.offset_in_pack)).one()
    before = _records(drive)
    assert _put(up, b, data) is True
    assert _records(drive) == before + 1  # B paid for a write
    assert _put(up, b, data) is False  # B's own block now: no write needed
    assert _records(drive) == before + 1
    framed = FRAME.pack(bid, len(data)) + data
    c = make_user()
    put_blocks(up, c.id, framed)  # the batch route writes it too
    assert _records(drive) == before + 2
    with drive.sm() as s:
        assert s.execute(sa.select(Block.pack_id, Block.offset_in_pack)).one() == tuple(first)
        assert s.execute(sa.select(Block.refcount)).scalar() == 0
        pins = sorted(s.execute(sa.select(UploadPin.session_id)).scalars())
        p = s.get(Pack, first[0])
    assert pins == sorted(f"blocks-{x.id}" for x in (a, b, c))
    # the copies are dead bytes: only one record is live
    drive.blocks.close()
    with drive.sm() as s:
        p = s.get(Pack, first[0])
        assert p.live_bytes == sum(packfmt.RECORD_HEADER + st for st in s.execute(
            sa.select(Block.stored_size).where(Block.pack_id == p.id)).scalars())
    # the file B commits reads back from the first copy
    res = up.commit_blocks(b.id, b.root_id, "f.bin", [bid.hex()], len(data), bid.hex())
    assert read_all(drive, b, res.node.id) == data


def test_backends_that_cannot_append_write_a_pack_per_request(drive):
    class NoAppend(type(drive.blocks.hot)):
        appends_durably = False
    from storage.blockstore import BlockStore
    store = BlockStore(drive.sm, NoAppend(drive.blocks.hot.url), drive.blocks.chunker,
                       shared_pack_request_bytes=1 << 20)
    assert store.shared is None



def test_a_commit_past_the_end_of_a_pack_sealed_by_someone_else_fails(drive, make_user):
    """GC recovering a pack it took for crashed seals it at the size its file had then: a
    record appended after that must not be committed into it."""
    u = make_user()
    up = Uploads(drive)
    _put(up, u, b"first")
    pid = drive.blocks.shared.current_id
    with drive.sm() as s, s.begin():
        size = drive.blocks.hot.size(drive.blocks.pack_key(pid))
        s.execute(sa.update(Pack).where(Pack.id == pid).values(state="sealed", size=size))
    with pytest.raises(RetryLater):
        _put(up, u, b"second")
    assert drive.blocks.shared.current_id is None  # the writer left that pack
    assert _put(up, u, b"second") is True
    assert drive.blocks.shared.current_id != pid
    with drive.sm() as s, s.begin():  # what the recovery would have recorded: the file as it is now
        s.execute(sa.update(Pack).where(Pack.id == pid).values(size=drive.blocks.hot.size(drive.blocks.pack_key(pid))))
    for b in (b"first", b"second"):
        assert drive.blocks.read_block(hashlib.sha256(b).digest()) == b
