"""storage/uploads.py driven directly: tus-style sessions and the block API, on SQLite and
MariaDB (the ``drive`` fixture), each test ending with a deep fsck."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
import sqlalchemy as sa

from storage import clock
from storage.drive import Drive
from storage.errors import (ChecksumMismatch, ContentMismatch, Gone, InvalidInput, NotFound, OffsetMismatch,
                            QuotaExceeded)
from storage.models import Block, FileVersion, Node, UploadChunk, UploadPin, UploadSession, User, VersionBlock
from storage.uploads import Uploads
from tests.conftest import put_bytes, rand, read_all


@pytest.fixture
def up(drive):
    return Uploads(drive)


def _send(up, user, sid, data, lo, hi, **kw):
    return up.append(user.id, sid, lo, io.BytesIO(data[lo:hi]), declared=hi - lo, **kw)


def _block_list(drive, version_id) -> list[bytes]:
    with drive.sm() as s:
        return [r[0] for r in s.execute(sa.select(VersionBlock.block_id)
                                        .where(VersionBlock.version_id == version_id).order_by(VersionBlock.seq))]


def _count(drive, stmt) -> int:
    with drive.sm() as s:
        return s.execute(stmt).scalar_one()


def _pins(drive, sid) -> int:
    return _count(drive, sa.select(sa.func.count()).select_from(UploadPin).where(UploadPin.session_id == sid))


def _refcounts(drive, ids) -> dict[bytes, int]:
    with drive.sm() as s:
        return dict(s.execute(sa.select(Block.id, Block.refcount).where(Block.id.in_(list(ids)))).all())


def _used(drive, user) -> int:
    with drive.sm() as s:
        return s.get(User, user.id).used_bytes


def _nodes_named(drive, user, name) -> int:
    return _count(drive, sa.select(sa.func.count()).select_from(Node)
                  .where(Node.owner_id == user.id, Node.name == name))


# ---- resumable sessions ---------------------------------------------------------------------

def test_uneven_appends_store_exactly_the_blocks_of_a_one_shot_put(drive, up, make_user):
    a = make_user()
    data = rand(1_500_000, seed=1)
    info = up.create(a.id, a.root_id, "f.bin", len(data), {"filename": "f.bin"})
    # pieces below the minimum chunk, above the maximum chunk, and one byte long
    cuts = [0, 1, 7_000, 300_001, 300_002, 950_000, len(data)]
    results = []
    for lo, hi in zip(cuts, cuts[1:]):
        info, res = _send(up, a, info.id, data, lo, hi)
        assert info.offset == hi
        results.append(res)
    assert results[:-1] == [None] * (len(cuts) - 2)  # only the last byte makes a file
    res = results[-1]
    assert res.created and info.state == "done" and info.node_id == res.node.id
    assert res.node.sha256 == hashlib.sha256(data).hexdigest()  # computed from the stored blocks
    assert read_all(drive, a, res.node.id) == data
    assert _pins(drive, info.id) == 0  # refs took over from the pins
    assert _count(drive, sa.select(sa.func.count()).select_from(UploadChunk)
                  .where(UploadChunk.session_id == info.id)) == 0

    again = put_bytes(drive, a, "again.bin", data)
    assert again.new_bytes == 0
    blocks = _block_list(drive, res.version_id)
    assert len(blocks) > 5
    assert blocks == _block_list(drive, again.version_id)
    assert set(_refcounts(drive, blocks).values()) == {2}


def test_one_append_with_the_whole_file_hashes_on_the_fly(drive, up, make_user):
    a = make_user()
    data = rand(400_000, seed=2)
    info = up.create(a.id, a.root_id, "one.bin", len(data))
    info, res = _send(up, a, info.id, data, 0, len(data))
    assert res.node.sha256 == hashlib.sha256(data).hexdigest() and res.node.size == len(data)
    assert put_bytes(drive, a, "two.bin", data).new_bytes == 0


def test_wrong_offset_is_a_conflict_and_leaves_the_offset(drive, up, make_user):
    a = make_user()
    data = rand(200_000, seed=3)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    info, _ = _send(up, a, info.id, data, 0, 50_000)
    for wrong in (0, 49_999, 50_001, len(data)):
        with pytest.raises(OffsetMismatch) as exc:
            up.append(a.id, info.id, wrong, io.BytesIO(data[wrong:wrong + 10]), declared=10)
        assert exc.value.details["offset"] == 50_000
    assert up.get(a.id, info.id).offset == 50_000
    info, res = _send(up, a, info.id, data, 50_000, len(data))
    assert read_all(drive, a, res.node.id) == data


def test_a_finished_session_refuses_more_bytes(drive, up, make_user):
    a = make_user()
    info = up.create(a.id, a.root_id, "f.bin", 10)
    info, res = up.append(a.id, info.id, 0, io.BytesIO(b"0123456789"))
    assert res is not None
    with pytest.raises(OffsetMismatch):
        up.append(a.id, info.id, 10, io.BytesIO(b"x"))
    assert read_all(drive, a, res.node.id) == b"0123456789"


def test_more_bytes_than_declared_length_are_refused(drive, up, make_user):
    a = make_user()
    info = up.create(a.id, a.root_id, "f.bin", 100)
    with pytest.raises(InvalidInput):
        up.append(a.id, info.id, 0, io.BytesIO(b"x" * 101))
    assert up.get(a.id, info.id).offset == 0


def test_checksum_mismatch_leaves_the_offset_and_the_tail(drive, up, make_user):
    a = make_user()
    data = rand(300_000, seed=4)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    info, _ = _send(up, a, info.id, data, 0, 100_000)
    with drive.sm() as s:
        meta_before = s.get(UploadSession, info.id).meta
    piece = data[100_000:200_000]
    bad = hashlib.sha256(piece[:-1] + b"?").digest()
    with pytest.raises(ChecksumMismatch):
        up.append(a.id, info.id, 100_000, io.BytesIO(piece), declared=len(piece), checksum=("sha256", bad))
    # a declared checksum over a chunk cut short cannot be verified: refused too
    with pytest.raises(ChecksumMismatch):
        up.append(a.id, info.id, 100_000, io.BytesIO(piece[:50_000]), declared=len(piece),
                  checksum=("sha256", hashlib.sha256(piece).digest()))
    with drive.sm() as s:
        us = s.get(UploadSession, info.id)
        assert (us.offset, us.meta) == (100_000, meta_before)
    info, _ = _send(up, a, info.id, data, 100_000, 200_000, checksum=("sha1", hashlib.sha1(piece).digest()))
    assert info.offset == 200_000
    info, res = _send(up, a, info.id, data, 200_000, len(data))
    assert read_all(drive, a, res.node.id) == data
    assert put_bytes(drive, a, "again.bin", data).new_bytes == 0


def test_a_dropped_connection_keeps_what_arrived(drive, up, make_user):
    a = make_user()
    data = rand(250_000, seed=5)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    info, _ = up.append(a.id, info.id, 0, io.BytesIO(data[:90_000]), declared=200_000)
    assert info.offset == 90_000
    info, res = _send(up, a, info.id, data, 90_000, len(data))
    assert read_all(drive, a, res.node.id) == data


class _Crash(Exception):
    pass


def test_resume_after_a_crash_between_appends(drive, up, make_user, config, db_engine):
    """Append 2 dies after its blocks and tail reached the backend but before its metadata
    transaction; a fresh process resumes from the offset the session reports."""
    a = make_user()
    data = rand(1_200_000, seed=6)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    info, _ = _send(up, a, info.id, data, 0, 333_333)

    real_tx = drive.tx

    def crash(fn, attempts=4):
        raise _Crash()
    drive.tx = crash
    with pytest.raises(_Crash):
        _send(up, a, info.id, data, 333_333, 800_000)
    drive.tx = real_tx

    class Broken(io.BytesIO):  # a body whose socket dies mid-read: the append fails, nothing moves
        def read(self, n=-1):
            if self.tell() > 100_000:
                raise ConnectionResetError()
            return super().read(min(n, 50_000) if n and n > 0 else 50_000)
    with pytest.raises(ConnectionResetError):
        up.append(a.id, info.id, 333_333, Broken(data[333_333:800_000]), declared=466_667)

    other = Drive(config, engine=db_engine)  # "another server process"
    up2 = Uploads(other)
    info2 = up2.get(a.id, info.id)
    assert info2.offset == 333_333
    info2, _ = _send(up2, a, info.id, data, info2.offset, 800_000)
    info2, res = _send(up2, a, info.id, data, 800_000, len(data))
    assert read_all(drive, a, res.node.id) == data
    assert res.node.sha256 == hashlib.sha256(data).hexdigest()
    assert put_bytes(drive, a, "again.bin", data).new_bytes == 0


def test_expiry_releases_pins_block_list_and_tail(drive, up, make_user):
    a = make_user()
    data = rand(500_000, seed=7)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    info, _ = _send(up, a, info.id, data, 0, 300_000)
    assert _pins(drive, info.id) > 0
    tails = [k for k, _ in drive.blocks.hot.list(f"uploads/{info.id}/")]
    assert len(tails) == 1
    assert up.expire() == 0  # not yet
    clock.advance(drive.config["server"]["upload_expire_seconds"] + 1)
    with pytest.raises(Gone):
        up.get(a.id, info.id)
    assert up.expire() == 1
    assert _pins(drive, info.id) == 0
    assert _count(drive, sa.select(sa.func.count()).select_from(UploadChunk)
                  .where(UploadChunk.session_id == info.id)) == 0
    assert list(drive.blocks.hot.list(f"uploads/{info.id}/")) == []
    with drive.sm() as s:
        assert s.get(UploadSession, info.id).state == "expired"
    with pytest.raises(Gone):
        _send(up, a, info.id, data, 300_000, len(data))
    assert _nodes_named(drive, a, "f.bin") == 0 and _used(drive, a) == 0


def test_expiring_a_session_that_just_finished_leaves_it_done(drive, up, make_user):
    """expire() picks its ids, then aborts each: a session that completed in between must
    stay done (its pins and block list were already handed over to the version)."""
    a = make_user()
    info = up.create(a.id, a.root_id, "f.bin", 5)
    info, res = up.append(a.id, info.id, 0, io.BytesIO(b"hello"))
    up.abort(info.id, state="expired")
    with drive.sm() as s:
        us = s.get(UploadSession, info.id)
        assert (us.state, us.node_id) == ("done", res.node.id)


def test_sessions_are_private_to_their_user(drive, up, make_user):
    a, b = make_user(), make_user()
    info = up.create(a.id, a.root_id, "f.bin", 10)
    for call in (lambda: up.get(b.id, info.id), lambda: up.terminate(b.id, info.id),
                 lambda: up.append(b.id, info.id, 0, io.BytesIO(b"x" * 10))):
        with pytest.raises(NotFound):
            call()
    assert up.get(a.id, info.id).offset == 0


def test_terminate_releases_everything(drive, up, make_user):
    a = make_user()
    data = rand(200_000, seed=8)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    _send(up, a, info.id, data, 0, 150_000)
    up.terminate(a.id, info.id)
    assert _pins(drive, info.id) == 0
    assert list(drive.blocks.hot.list(f"uploads/{info.id}/")) == []
    with pytest.raises(Gone):
        up.get(a.id, info.id)


def test_quota_is_reserved_at_create_and_turned_into_the_version_at_the_end(drive, up, make_user):
    a = make_user()
    with drive.sm() as s, s.begin():
        s.get(User, a.id).quota_bytes = 300_000
    with pytest.raises(QuotaExceeded):
        up.create(a.id, a.root_id, "big.bin", 300_001)
    data = rand(200_000, seed=9)
    info = up.create(a.id, a.root_id, "f.bin", len(data))
    _send(up, a, info.id, data, 0, 100_000)
    with pytest.raises(QuotaExceeded):  # the room is reserved: nothing else can take it meanwhile
        put_bytes(drive, a, "filler.bin", rand(150_000, seed=10))
    assert drive.account(a.id).pending_bytes == len(data)
    _send(up, a, info.id, data, 100_000, len(data))
    assert (_used(drive, a), drive.account(a.id).pending_bytes) == (len(data), 0)
    assert _nodes_named(drive, a, "f.bin") == 1
    assert _pins(drive, info.id) == 0


def test_an_upload_into_a_shared_folder_needs_editor_and_charges_the_owner(drive, up, make_user):
    from storage.sharing import Sharing
    from storage.errors import Forbidden
    owner, ed, viewer = make_user(), make_user(), make_user()
    folder = drive.mkdir(owner.id, owner.root_id, "team")
    sh = Sharing(drive)
    sh.grant(owner.id, folder.id, ed.email, "editor")
    sh.grant(owner.id, folder.id, viewer.email, "viewer")
    with pytest.raises(Forbidden):
        up.create(viewer.id, folder.id, "v.bin", 10)
    info = up.create(ed.id, folder.id, "e.bin", 10)
    _, res = up.append(ed.id, info.id, 0, io.BytesIO(b"0123456789"))
    assert res.node.owner_id == owner.id
    assert (_used(drive, owner), _used(drive, ed)) == (10, 0)


# ---- the block API ----------------------------------------------------------------------------

def _blocks_of(drive, data) -> list[bytes]:
    return [bytes(v) for v in drive.blocks.chunker.chunks(io.BytesIO(data))]


def test_missing_never_reveals_other_users_blocks(drive, up, make_user):
    a, b = make_user(), make_user()
    secret = rand(600_000, seed=11)
    res = put_bytes(drive, a, "secret.bin", secret)
    theirs = [h.hex() for h in _block_list(drive, res.version_id)]
    fresh = [hashlib.sha256(rand(1000, seed=100 + i)).hexdigest() for i in range(len(theirs))]
    assert up.missing(a.id, theirs) == []  # the owner has them
    for_theirs, for_fresh = up.missing(b.id, theirs), up.missing(b.id, fresh)
    assert for_theirs == theirs and for_fresh == fresh  # same shape: every hash, in order
    assert up.missing(b.id, theirs + theirs[:1]) == theirs  # asked twice, answered once
    # sending a block someone else has must look exactly like sending a new one
    raw = _blocks_of(drive, secret)[0]
    fresh_raw = rand(20_000, seed=12)
    assert up.put_block(b.id, hashlib.sha256(raw).hexdigest(), raw) == \
        up.put_block(b.id, hashlib.sha256(fresh_raw).hexdigest(), fresh_raw) is True
    assert up.missing(b.id, theirs[:1]) == []  # now b sent it
    # ...and sending it again is the only case that says "you had it"
    assert up.put_block(b.id, hashlib.sha256(fresh_raw).hexdigest(), fresh_raw) is False


def test_commit_cannot_use_blocks_the_caller_never_sent(drive, up, make_user):
    a, b = make_user(), make_user()
    secret = rand(300_000, seed=13)
    res = put_bytes(drive, a, "secret.bin", secret)
    hashes = [h.hex() for h in _block_list(drive, res.version_id)]
    with pytest.raises(InvalidInput) as exc:
        up.commit_blocks(b.id, b.root_id, "stolen.bin", hashes, len(secret), hashlib.sha256(secret).hexdigest())
    assert exc.value.details["missing"] == len(set(hashes))
    assert _nodes_named(drive, b, "stolen.bin") == 0


def test_commit_from_blocks(drive, up, make_user):
    a = make_user()
    data = rand(700_000, seed=14)
    blocks = _blocks_of(drive, data)
    hashes = [hashlib.sha256(x).hexdigest() for x in blocks]
    assert up.missing(a.id, hashes) == list(dict.fromkeys(hashes))
    for h, raw in zip(hashes, blocks):
        up.put_block(a.id, h, raw)
    assert up.missing(a.id, hashes) == []
    res = up.commit_blocks(a.id, a.root_id, "f.bin", hashes, len(data), hashlib.sha256(data).hexdigest())
    assert res.created and read_all(drive, a, res.node.id) == data
    assert _pins(drive, f"blocks-{a.id}") == 0
    assert put_bytes(drive, a, "again.bin", data).new_bytes == 0
    # a second version reusing all but the last block: only that one is missing
    data2 = data[:-1000] + rand(1000, seed=15)
    blocks2 = _blocks_of(drive, data2)
    hashes2 = [hashlib.sha256(x).hexdigest() for x in blocks2]
    assert up.missing(a.id, hashes2) == [hashes2[-1]]
    up.put_block(a.id, hashes2[-1], blocks2[-1])
    res2 = up.commit_blocks(a.id, a.root_id, "f.bin", hashes2, len(data2), hashlib.sha256(data2).hexdigest(),
                            if_match=res.version_id)
    assert not res2.created and read_all(drive, a, res.node.id) == data2


@pytest.mark.parametrize("wrong", ["size+1", "size-1", "sha", "order"])
def test_commit_with_wrong_size_or_sha256_references_nothing(drive, up, make_user, wrong):
    a = make_user()
    data = rand(500_000, seed=16)
    blocks = _blocks_of(drive, data)
    assert len(blocks) >= 2
    hashes = [hashlib.sha256(x).hexdigest() for x in blocks]
    for h, raw in zip(hashes, blocks):
        up.put_block(a.id, h, raw)
    size, sha = len(data), hashlib.sha256(data).hexdigest()
    if wrong == "size+1":
        size += 1
    elif wrong == "size-1":
        size -= 1
    elif wrong == "sha":
        sha = hashlib.sha256(data + b"x").hexdigest()
    else:
        hashes = hashes[::-1]
    with pytest.raises(ContentMismatch):
        up.commit_blocks(a.id, a.root_id, "f.bin", hashes, size, sha)
    assert set(_refcounts(drive, [bytes.fromhex(h) for h in hashes]).values()) == {0}
    assert _nodes_named(drive, a, "f.bin") == 0
    assert _count(drive, sa.select(sa.func.count()).select_from(FileVersion)) == 0
    assert _used(drive, a) == 0
    assert _pins(drive, f"blocks-{a.id}") == len(set(hashes))  # still there for a corrected commit


def test_put_block_checks_the_hash_and_the_size(drive, up, make_user):
    a = make_user()
    with pytest.raises(ContentMismatch):
        up.put_block(a.id, hashlib.sha256(b"abc").hexdigest(), b"abd")
    big = b"x" * (drive.blocks.chunker.max_size + 1)
    with pytest.raises(InvalidInput):
        up.put_block(a.id, hashlib.sha256(big).hexdigest(), big)
    with pytest.raises(InvalidInput):
        up.put_block(a.id, "zz" * 32, b"abc")
    assert _count(drive, sa.select(sa.func.count()).select_from(Block)) == 0


def test_quota_exceeded_on_commit_charges_nothing(drive, up, make_user):
    # Blocks the caller already owns need no upload (so hold nothing pending), but a second
    # file made of them is charged whole: a commit past the quota is refused.
    a = make_user()
    data = rand(400_000, seed=17)
    blocks = _blocks_of(drive, data)
    hashes = [hashlib.sha256(x).hexdigest() for x in blocks]
    put_bytes(drive, a, "first.bin", data)
    with drive.sm() as s, s.begin():
        s.get(User, a.id).quota_bytes = 2 * len(data) - 1
    with pytest.raises(QuotaExceeded):
        up.commit_blocks(a.id, a.root_id, "f.bin", hashes, len(data), hashlib.sha256(data).hexdigest())
    assert _used(drive, a) == len(data)
    assert _nodes_named(drive, a, "f.bin") == 0
    assert set(_refcounts(drive, [bytes.fromhex(h) for h in hashes]).values()) == {1}


def test_an_idle_block_session_starts_over(drive, up, make_user):
    """A block session past its expiry (no block sent for upload_expire_seconds) is renewed
    by the next block sent, without waiting for the gc job; what it pinned is released."""
    a = make_user()
    first, second = rand(30_000, seed=18), rand(30_000, seed=19)
    h1, h2 = hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()
    up.put_block(a.id, h1, first)
    clock.advance(drive.config["server"]["upload_expire_seconds"] + 1)
    assert up.missing(a.id, [h1]) == [h1]  # its pins no longer count
    assert up.put_block(a.id, h2, second) is True
    assert up.missing(a.id, [h1, h2]) == [h1]
    with drive.sm() as s:
        assert s.get(UploadSession, f"blocks-{a.id}").state == "active"
    assert _pins(drive, f"blocks-{a.id}") == 1
    assert up.expire() == 0  # the renewed session is not expired from under the client


def test_tus_metadata_and_checksum_header_values_round_trip(drive, up, make_user):
    a = make_user()
    info = up.create(a.id, a.root_id, "f.bin", 3, {"filename": "f.bin", "note": base64.b64encode(b"x").decode()})
    assert up.get(a.id, info.id).metadata == {"filename": "f.bin", "note": "eA=="}
    with pytest.raises(InvalidInput):
        up.append(a.id, info.id, 0, io.BytesIO(b"abc"), checksum=("md5", b"x"))
    assert up.get(a.id, info.id).offset == 0


def _records(drive) -> dict[bytes, int]:
    from storage.fsck import index_from_packs
    return {bid: len(found) for bid, found in index_from_packs(drive.blocks.hot).items()}


def test_tus_writes_blocks_only_the_caller_lacks(drive, make_user, up):
    """A tus upload of content another user stores writes every block again (its time must
    not tell that they have it); blocks the caller has, in their files or pinned earlier in
    this upload, are not written twice."""
    from storage.chunking import make_chunker
    drive.blocks.chunker = make_chunker({**drive.config["storage"], "chunker": "fixed"})
    c = drive.config["storage"]["chunk_avg"]
    a, b = make_user(), make_user()
    x, y = rand(c, 70), rand(c, 71)
    put_bytes(drive, a, "a.bin", x)
    assert _records(drive) == {hashlib.sha256(x).digest(): 1}
    data = x + x + x + y
    sess = up.create(b.id, b.root_id, "b.bin", len(data))
    _send(up, b, sess.id, data, 0, 2 * c)  # x is written once; its second copy waits as the tail
    _, res = _send(up, b, sess.id, data, 2 * c, len(data))  # x again: pinned by this upload
    assert read_all(drive, b, res.node.id) == data
    assert _records(drive) == {hashlib.sha256(x).digest(): 2, hashlib.sha256(y).digest(): 1}
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one() == 2
    sess = up.create(b.id, b.root_id, "again.bin", 2 * c)  # all of it B's own now
    _send(up, b, sess.id, y + x, 0, 2 * c)
    assert _records(drive) == {hashlib.sha256(x).digest(): 2, hashlib.sha256(y).digest(): 1}
