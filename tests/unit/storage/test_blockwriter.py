"""The block writer every ingest path uses, and the pack store it writes through."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from storage.blockindex import Ingested
from storage.models import Block, Pack
from storage.packstore import BlockLocation, PackStore
from tests.conftest import put_bytes, rand


def chunk(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def a_stored_block(drive, make_user, seed: int) -> bytes:
    """The raw bytes of a block a user's file holds."""
    put_bytes(drive, make_user(), "a.bin", rand(50_000, seed))
    with drive.sm() as s:
        block_id = s.execute(sa.select(Block.id).limit(1)).scalar_one()
    return drive.blocks.read_block(block_id)


def test_unknown_skips_blocks_seen_or_stored_and_writes_the_rest_once(drive, make_user):
    stored = a_stored_block(drive, make_user, 1)
    fresh = rand(40_000, 2)
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.add_chunks([chunk(stored), chunk(fresh), chunk(fresh)])
    writer.add_chunks([chunk(fresh)])  # a later batch of the same ingest
    writer.close()
    assert list(ing.new_blocks) == [chunk(fresh)[0]]


def test_with_usable_only_the_callers_own_blocks_are_skipped(drive, make_user):
    stored = a_stored_block(drive, make_user, 3)
    asked = []

    def nobody_owns(block_ids):
        asked.append(sorted(block_ids))
        return set()
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.add_chunks([chunk(stored)], nobody_owns)
    writer.close()
    assert asked == [[chunk(stored)[0]]]
    assert list(ing.new_blocks) == [chunk(stored)[0]]  # written again, though stored


def test_a_closed_writer_leaves_a_durable_pack_the_pack_store_reads_without_a_database(drive):
    data = rand(30_000, 4)
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.reserve()
    writer.add_chunks([chunk(data)])
    writer.close()
    nb = ing.new_blocks[chunk(data)[0]]
    # its own pack, or the shared open pack for a block this small where the disk can sync
    assert nb.pack_id in {p.id for p in ing.packs} | ing.shared_packs
    with drive.sm() as s:
        url = s.execute(sa.select(Pack.url).where(Pack.id == nb.pack_id)).scalar_one()
        assert s.execute(sa.select(Block.id).where(Block.id == nb.block_id)).first() is None  # not committed
    reads = []
    packs = PackStore(drive.blocks.hot, on_read=reads.append)
    loc = BlockLocation(nb.block_id, nb.size, nb.stored_size, url, nb.offset)
    assert list(packs.read_blocks([loc])) == [data]
    assert reads == [url]


def test_an_ingest_with_every_block_known_gives_back_its_reserved_pack(drive, make_user):
    data = a_stored_block(drive, make_user, 5)
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.reserve()
    writer.add_chunks([chunk(data)])
    writer.close()
    assert ing.new_blocks == {} and ing.packs == [] and len(ing.unused_packs) == 1


def test_a_writer_protecting_hits_registers_its_row_only_when_a_lookup_finds_one(drive, make_user):
    stored = a_stored_block(drive, make_user, 6)
    with drive.sm() as s:
        rows = s.execute(sa.select(sa.func.count()).select_from(Pack)).scalar()
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.protect_hits()
    assert list(writer.unknown([chunk(rand(20_000, 7))])) != []
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Pack)).scalar() == rows  # fresh: no row
    assert list(writer.unknown([chunk(stored)])) == []  # a hit: the row, then the hit again
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Pack)).scalar() == rows + 1
    assert writer.reserved is not None


def test_a_hit_marked_before_the_row_exists_is_written_again(drive, make_user):
    stored = a_stored_block(drive, make_user, 8)
    ing = Ingested()
    writer = drive.blocks.writer(ing)
    writer.protect_hits()
    real = drive.blocks.index.known_blocks
    calls = []

    def known(ids):
        got = real(ids)
        calls.append(got)
        if len(calls) == 1:  # GC marks the hit between the first lookup and the reservation
            with drive.sm() as s, s.begin():
                s.execute(sa.update(Block).values(gc_marked_at=sa.func.current_timestamp()))
        return got
    drive.blocks.index.known_blocks = known
    try:
        assert list(writer.unknown([chunk(stored)])) == [chunk(stored)]
    finally:
        del drive.blocks.index.known_blocks
    assert len(calls) == 2 and calls[1] == set()
    with drive.sm() as s, s.begin():  # let the after-test fsck see the store as it was
        s.execute(sa.update(Block).values(gc_marked_at=None))
