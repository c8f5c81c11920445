"""How long a read may use the pack locations it looked up (storage/reads.py), and when a
superseded pack's file may go (storage/packlife.py)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from storage import clock, packlife
from storage.errors import IntegrityError
from storage.models import Block, Pack, VersionBlock
from storage.packstore import BlockLocation, Source
from storage.reads import read_current
from tests.conftest import make_config, put_bytes, rand, read_all


@pytest.fixture
def config(tmp_path):
    # a pack per upload, not the shared open pack: these tests move one file's pack
    return make_config(tmp_path, shared_pack_request_bytes=0)


def loc(block: bytes, pack: str) -> BlockLocation:
    return BlockLocation(block, 1, 1, f"file:///p/{pack}.pack", 0)


class Fake:
    """A pack store of named packs (block -> bytes), an index, and a clock the test moves."""

    def __init__(self, index: dict[bytes, str], packs: dict[str, dict[bytes, bytes]]):
        self.index, self.packs, self.t, self.lookups, self.reads = index, packs, 0.0, 0, []

    def read(self, locs):
        for x in locs:
            pack = x.pack_url.rsplit("/", 1)[-1].removesuffix(".pack")
            self.reads.append((x.block_id, pack))
            if pack not in self.packs:
                raise IntegrityError(f"pack {pack} is missing")
            yield self.packs[pack][x.block_id]

    def relocate(self, ids):
        self.lookups += 1
        return {b: loc(b, self.index[b]) for b in ids if b in self.index}


def test_a_read_paused_past_the_bound_looks_the_rest_up_again():
    ids = [b"a", b"b", b"c"]
    f = Fake({b: "old" for b in ids}, {"old": {b: b.upper() for b in ids}})
    it = read_current(f.read, f.relocate, [loc(b, "old") for b in ids], max_age=10, clock=lambda: f.t)
    assert next(it) == b"A"
    f.t = 5  # within the bound: the location looked up before is used
    assert next(it) == b"B" and f.lookups == 0
    # compaction moved c to a new pack; the reader was paused past the bound
    f.index[b"c"] = "new"
    f.packs["new"] = {b"c": b"C2"}
    f.t = 11
    assert next(it) == b"C2" and f.lookups == 1
    assert f.reads[-1] == (b"c", "new")


def test_a_read_whose_pack_is_gone_looks_the_block_up_again_once():
    ids = [b"a", b"b"]
    f = Fake({b: "new" for b in ids}, {"new": {b"a": b"A", b"b": b"B"}})  # "old" is deleted
    out = list(read_current(f.read, f.relocate, [loc(b, "old") for b in ids], max_age=600, clock=lambda: f.t))
    assert out == [b"A", b"B"] and f.lookups == 1


def test_a_missing_pack_the_index_still_names_is_an_error():
    """Negative control: the same location after the second look-up (the pack really is
    missing) fails as before, after one look-up, with no loop."""
    f = Fake({b"a": "old"}, {})
    with pytest.raises(IntegrityError, match="missing"):
        list(read_current(f.read, f.relocate, [loc(b"a", "old")], max_age=600, clock=lambda: f.t))
    assert f.lookups == 1


def _move_file_to_new_pack(drive, version_id) -> tuple[list[BlockLocation], str]:
    """Copy a version's blocks into a new pack and switch them to it, as compaction does.
    Returns the locations looked up before, and the old pack's id."""
    store = drive.blocks.packs
    with drive.sm() as s:
        rows = s.execute(sa.select(Block.id, Block.size, Block.stored_size, Pack.url, Block.offset_in_pack, Pack.id)
                         .join(Pack, Pack.id == Block.pack_id).join(VersionBlock, VersionBlock.block_id == Block.id)
                         .where(VersionBlock.version_id == version_id).order_by(VersionBlock.seq)).all()
    before = [BlockLocation(*r[:5]) for r in rows]
    (old,) = {r[5] for r in rows}
    new = packlife.new_pack_id()
    key = store.pack_key(new)
    packlife.register_pack(drive.sm, new, store.hot.url_for(key))
    size, checksum, moves, bad = store.write_pack(new, key, [Source(r[0], r[5], r[3], r[4], r[2]) for r in rows])
    assert not bad
    assert packlife.switch_blocks(drive.sm, new, size, checksum, moves)["retired_ids"] == [old]
    return before, old


def test_a_read_holding_locations_of_a_deleted_pack_reads_the_blocks_where_they_are_now(drive, make_user):
    u = make_user()
    data = rand(300_000, 7)
    res = put_bytes(drive, u, "a.bin", data)
    before, old = _move_file_to_new_pack(drive, res.version_id)
    later = clock.now() + dt.timedelta(seconds=10)
    out = packlife.delete_retired_packs(drive.sm, drive.blocks.packs, clock.now() - dt.timedelta(days=1),
                                        superseded_before=later)
    assert out["packs_deleted"] == 1
    with pytest.raises(IntegrityError, match="missing"):  # the pack store alone: the old pack is gone
        b"".join(drive.blocks.packs.read_blocks(before))
    assert b"".join(drive.blocks.read_blocks(before)) == data
    assert read_all(drive, u, res.node.id) == data


def test_a_superseded_pack_goes_after_the_read_bound_and_a_given_up_open_pack_after_the_grace(drive, make_user):
    u = make_user()
    res = put_bytes(drive, u, "a.bin", rand(200_000, 8))
    _, old = _move_file_to_new_pack(drive, res.version_id)
    given_up = packlife.new_pack_id()
    packlife.register_pack(drive.sm, given_up, drive.blocks.packs.hot.url_for(drive.blocks.packs.pack_key(given_up)))
    with drive.sm() as s, s.begin():  # an upload that died with its pack open, retired by GC
        s.execute(sa.update(Pack).where(Pack.id == given_up).values(state="retiring", retired_at=clock.now(), size=1))
    st = drive.config["storage"]
    grace = dt.timedelta(seconds=drive.config["gc"]["grace_seconds"])
    bound = st["read_location_max_seconds"] + st["timeout_seconds"]
    assert bound < grace.total_seconds()

    def delete():
        t = clock.now()
        return packlife.delete_retired_packs(
            drive.sm, drive.blocks.packs, t - grace,
            superseded_before=packlife.superseded_cutoff(t, st["read_location_max_seconds"], st["timeout_seconds"]))

    def state(pack_id):
        with drive.sm() as s:
            return s.execute(sa.select(Pack.state).where(Pack.id == pack_id)).scalar()

    clock.advance(bound - 5)  # a reader may still hold the old pack's location
    assert delete()["packs_deleted"] == 0 and state(old) == "retiring"
    clock.advance(10)
    assert delete()["packs_deleted"] == 1 and state(old) == "deleted"
    assert state(given_up) == "retiring"  # never sealed: its writer may be alive; the grace holds
    clock.advance(grace.total_seconds())
    assert delete()["packs_deleted"] == 1 and state(given_up) == "deleted"


def test_a_pack_is_retired_at_the_time_of_the_switch_not_the_time_the_caller_passes(drive, make_user):
    """A job passes its start time; a reader may look the pack up until the switch commits,
    so the bound counts from the switch."""
    u = make_user()
    res = put_bytes(drive, u, "a.bin", rand(100_000, 9))
    store = drive.blocks.packs
    with drive.sm() as s:
        rows = s.execute(sa.select(Block.id, Block.pack_id, Pack.url, Block.offset_in_pack, Block.stored_size)
                         .join(Pack, Pack.id == Block.pack_id).join(VersionBlock, VersionBlock.block_id == Block.id)
                         .where(VersionBlock.version_id == res.version_id)).all()
    new = packlife.new_pack_id()
    key = store.pack_key(new)
    packlife.register_pack(drive.sm, new, store.hot.url_for(key))
    size, checksum, moves, _ = store.write_pack(new, key, [Source(*r) for r in rows])
    started = clock.now() - dt.timedelta(hours=2)
    packlife.switch_blocks(drive.sm, new, size, checksum, moves, at=started)
    with drive.sm() as s:
        retired_at = s.execute(sa.select(Pack.retired_at).where(Pack.id == rows[0][1])).scalar()
    assert retired_at > started
