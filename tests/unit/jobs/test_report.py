"""The ``report`` job: every headline figure asserted exactly on a store whose figures are
known by construction (on SQLite and MariaDB), and its pure transforms on small frames.

Expected values are derived from the construction only: block boundaries from the chunker
run on the test's own data, compressed sizes from zstandard run on those blocks, pack sizes
from the pack format's constants. Nothing is read back from ``blocks.stored_size`` or
``packs.size``.
"""

from __future__ import annotations

import io

import pytest
import zstandard

from storage import clock
from storage import pack as packfmt
from storage import reports
from storage.chunking import FastCDCChunker
from tests.conftest import SMALL_CHUNKS, put_bytes, rand

MiB = 1024 * 1024
PER_BLOCK = packfmt.RECORD_HEADER + packfmt.INDEX_ENTRY   # 48 + 56
PER_PACK = packfmt.HEADER_SIZE + packfmt.TRAILER_SIZE     # 24 + 24


def chunks_of(data: bytes) -> list[bytes]:
    c = FastCDCChunker(SMALL_CHUNKS["chunk_min"], SMALL_CHUNKS["chunk_avg"], SMALL_CHUNKS["chunk_max"])
    return [bytes(x) for x in c.chunks(io.BytesIO(data))]


def stored_len(block: bytes) -> int:
    """What the store should keep for ``block``: zstd level 3 when it saves >= 5%, else raw."""
    z = len(zstandard.ZstdCompressor(level=3).compress(block))
    return z if z <= len(block) * 0.95 else len(block)


def pack_size(blocks: list[bytes]) -> int:
    return PER_PACK + sum(PER_BLOCK + stored_len(b) for b in blocks)


@pytest.fixture
def known(drive, make_user):
    """The same 10 MiB file uploaded 5 times by 3 users, one 1 MiB file of zeroes, one file
    overwritten by a new version, one file in the trash, and one file purged (garbage)."""
    data, small, tmp, zeros = rand(10 * MiB, 61), rand(MiB, 62), rand(512 * 1024, 63), bytes(MiB)
    a, b, c = make_user("a@example.com"), make_user("b@example.com"), make_user("c@example.com")
    put_bytes(drive, a, "a1.bin", data)
    put_bytes(drive, a, "a2.bin", data)
    put_bytes(drive, b, "b1.bin", data)
    b2 = put_bytes(drive, b, "b2.bin", data)
    put_bytes(drive, c, "c1.bin", data)
    put_bytes(drive, c, "zeros.bin", zeros)
    put_bytes(drive, a, "a2.bin", small)            # a second version of a2
    drive.delete(b.id, b2.node.id)                  # in the trash: still kept, still counted
    t = put_bytes(drive, c, "tmp.bin", tmp)
    drive.delete(c.id, t.node.id)
    drive.purge(c.id, t.node.id)                    # its blocks are now garbage

    d_blocks, s_blocks, t_blocks, z_blocks = map(chunks_of, (data, small, tmp, zeros))
    # The construction's premises, checked rather than assumed:
    assert len(set(d_blocks + s_blocks + t_blocks)) == len(d_blocks) + len(s_blocks) + len(t_blocks)
    assert all(stored_len(x) == len(x) for x in d_blocks + s_blocks + t_blocks)  # random: kept raw
    assert z_blocks == [bytes(256 * 1024)] * 4       # all zeroes cut at chunk_max: one block, 4 refs
    zero = z_blocks[0]
    assert stored_len(zero) < 1000

    unique_raw = 10 * MiB + MiB + len(zero)
    stored = 10 * MiB + MiB + stored_len(zero)
    packs = {"data": pack_size(d_blocks), "small": pack_size(s_blocks), "zero": pack_size([zero]),
             "tmp": pack_size(t_blocks)}
    # b1.bin and c1.bin: content their uploader did not own yet is written again (the time of an
    # upload tells nothing of other users' content), a copy no block row points to until compact
    copies = 2 * packs["data"]
    return dict(users=(a, b, c), unique_raw=unique_raw, stored=stored, packs=packs, copies=copies,
                unindexed=copies - 2 * PER_PACK,
                unique_blocks=len(d_blocks) + len(s_blocks) + 1, tmp_blocks=len(t_blocks))


def test_headline_figures_are_exact(drive, known, run):
    a, b, c = known["users"]
    r = run("report")
    assert r.status == "ok"
    snap = reports.latest(drive.sm)
    h = snap["headline"]
    logical, all_versions = 42 * MiB, 52 * MiB
    tmp_garbage = known["tmp_blocks"] * PER_BLOCK + 512 * 1024
    expected = {
        "users": 3, "files": 6,
        "logical_bytes": logical, "trash_bytes": 10 * MiB, "logical_bytes_all_versions": all_versions,
        "used_bytes": all_versions,                    # every version kept counts
        "unique_blocks": known["unique_blocks"], "unique_raw_bytes": known["unique_raw"],
        "stored_bytes": known["stored"],
        "dedup_ratio": logical / known["unique_raw"],
        "dedup_ratio_all_versions": all_versions / known["unique_raw"],
        "compression_ratio": known["unique_raw"] / known["stored"],
        "packs": 6, "pack_bytes": sum(known["packs"].values()) + known["copies"],
        "pinned_blocks": 0, "pinned_bytes": 0,
        "garbage_blocks": known["tmp_blocks"], "garbage_block_bytes": 512 * 1024,
        "garbage_unindexed_bytes": known["unindexed"], "garbage_retiring_bytes": 0,
        "garbage_bytes": tmp_garbage + known["unindexed"],
        # the tmp pack and the two copies are all dead; the others not at all
        "garbage_rewrite_ready_bytes": tmp_garbage + known["unindexed"],
        "small_packs": 1,                              # the zero pack, under 0.5 * 512 KiB
        "uploads": 0, "downloads": 0, "bytes_in": 0, "bytes_out": 0,
        "job_runs": 1, "job_runs_failed": 0,           # this report's own run
    }
    assert {k: h[k] for k in expected} == expected
    # By hand: 42 MiB of files over 10 + 1 + 1/4 MiB of distinct blocks.
    assert h["dedup_ratio"] == pytest.approx(42 / 11.25) and h["dedup_ratio_all_versions"] == pytest.approx(52 / 11.25)
    assert 1.0 < h["compression_ratio"] < 1.03
    assert snap["tiers"] == [{"tier": "local", "packs": 6, "pack_bytes": sum(known["packs"].values()) + known["copies"],
                              "stored_bytes": known["stored"], "retiring_packs": 0, "retiring_bytes": 0}]
    assert [(u["email"], u["files"], u["logical_bytes"], u["trash_bytes"], u["all_versions_bytes"], u["used_bytes"])
            for u in snap["top_users"]] == [
        ("b@example.com", 2, 20 * MiB, 10 * MiB, 20 * MiB, 20 * MiB),
        ("a@example.com", 2, 11 * MiB, 0, 21 * MiB, 21 * MiB),
        ("c@example.com", 2, 11 * MiB, 0, 11 * MiB, 11 * MiB)]
    assert [u["rank"] for u in snap["top_users"]] == [1, 2, 3]
    assert [j["job"] for j in snap["jobs"]] == ["report"]


def test_gc_moves_garbage_from_blocks_to_retiring_packs(drive, known, run):
    run("report")
    run("gc")
    clock.advance(3601)
    swept = run("gc")
    assert swept.stats["swept"] == known["tmp_blocks"]
    run("report")
    h = reports.latest(drive.sm)["headline"]
    p = known["packs"]
    assert {k: h[k] for k in ("garbage_blocks", "garbage_block_bytes", "garbage_unindexed_bytes",
                              "garbage_retiring_bytes", "garbage_bytes", "packs", "pack_bytes", "stored_bytes",
                              "unique_raw_bytes", "job_runs")} == {
        "garbage_blocks": 0, "garbage_block_bytes": 0, "garbage_unindexed_bytes": known["unindexed"],
        "garbage_retiring_bytes": p["tmp"], "garbage_bytes": p["tmp"] + known["unindexed"],
        "packs": 5, "pack_bytes": p["data"] + p["small"] + p["zero"] + known["copies"],
        "stored_bytes": known["stored"],
        "unique_raw_bytes": known["unique_raw"], "job_runs": 4}
    snap = reports.latest(drive.sm)
    assert snap["tiers"][0]["retiring_packs"] == 1 and snap["tiers"][0]["retiring_bytes"] == p["tmp"]
    gc_runs = [j for j in snap["jobs"] if j["job"] == "gc"]
    assert len(gc_runs) == 2 and max(j["bytes_freed"] for j in gc_runs) == swept.stats["bytes_freed"] > 0
    # Two snapshots: the trend series has both, oldest first.
    series = reports.history(drive.sm)
    assert [s["headline"]["garbage_retiring_bytes"] for s in series] == [0, p["tmp"]]


def test_snapshot_has_a_parquet_copy_on_the_block_backend(drive, known, run):
    import pyarrow.parquet as pq
    r = run("report")
    snap = reports.latest(drive.sm)
    backend = drive.blocks.hot
    prefix = backend.key_for(snap["parquet_url"])
    assert prefix.startswith("reports/") and r.stats["snapshot_id"] == snap["id"]
    keys = sorted(k for k, _ in backend.list(prefix))
    assert keys == [f"{prefix}/{n}.parquet" for n in ("headline", "jobs", "tiers", "traffic", "users")]
    users = pq.read_table(io.BytesIO(backend.read(f"{prefix}/users.parquet"))).to_pylist()
    assert sorted((u["email"], u["logical_bytes"]) for u in users) == [
        ("a@example.com", 11 * MiB), ("b@example.com", 20 * MiB), ("c@example.com", 11 * MiB)]
    head = pq.read_table(io.BytesIO(backend.read(f"{prefix}/headline.parquet"))).to_pylist()[0]
    assert head["stored_bytes"] == known["stored"]


def test_dry_run_saves_no_snapshot(drive, known, run):
    r = run("report", dry_run=True)
    assert r.stats["headline"]["logical_bytes"] == 42 * MiB
    assert reports.latest(drive.sm) is None
