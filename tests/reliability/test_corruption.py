"""Corruption injection: one byte flipped in each of 100 random stored blocks (1,000 on local
disk in soak), with packs on local disk, on HDFS (native RPC; WebHDFS too in soak) and on S3.

What it proves, per backend:

- ``scrub`` reports exactly the damaged blocks: every one detected, no false positive;
- reading any file returns its exact bytes or raises :class:`storage.errors.IntegrityError`
  naming a damaged block, and a read that fails mid-way has returned only a correct prefix:
  wrong bytes are never served, and an intact file is never lost;
- where a clean copy of a damaged block exists (here, the copy a losing concurrent upload left
  in its own pack), scrub's repair rewrites the damaged pack from it and the files read back
  intact; blocks with no other copy are reported unrepairable and left as they are;
- ``fsck --deep`` afterwards names exactly the blocks that could not be repaired;
- over HTTP (local disk), a download of a damaged file is never a clean response: a 500
  problem when the first block is bad, a body cut short before its Content-Length otherwise.

Bytes are flipped anywhere in a record that carries meaning: the payload (most faults), and
the header's block id, codec, raw size, stored size and CRC32C fields (every fifth fault). The
three reserved header bytes are left alone: no reader uses them, so no check can see them.
"""

from __future__ import annotations

import io
import random
import uuid
from collections import defaultdict

import pytest
import requests
import sqlalchemy as sa

from storage import clock
from storage import pack as packfmt
from storage.config import load_config
from storage.db import migrate
from storage.drive import Drive
from storage.errors import IntegrityError
from storage.fsck import fsck
from storage.models import Block, FileVersion, Pack, VersionBlock
from tests.conftest import FAST_SCRYPT
from tests.reliability import figures
from tests.unit.jobs.conftest import JOBS_TEST, spark  # noqa: F401  (the shared SparkSession)

# Small blocks, so that a few MiB give hundreds of distinct blocks.
CHUNKS = {"chunk_min": 2048, "chunk_avg": 4096, "chunk_max": 16384}
# Header bytes whose damage a reader must notice: block id, codec, raw size, stored size, CRC32C.
HEADER_FIELDS = [*range(0, 33), *range(36, 48)]
WORDS = [w.encode() for w in "pack block record scrub repair copy drive folder version share".split()]


def faults_for(backend: str) -> int:
    return figures.scale(100, 1000 if backend == "local" else 100)


# HDFS through the native RPC client in CI; through WebHDFS too in soak.
BACKENDS = ["local", *(pytest.param(b, marks=pytest.mark.integration)
                       for b in ["hdfs", "s3", *(["webhdfs"] if figures.SOAK else [])])]


@pytest.fixture(params=BACKENDS)
def corrupt_drive(request, tmp_path):
    """A drive on SQLite with its packs on the backend under test (a fresh root each time)."""
    url = ""  # file://<home>/packs
    if request.param != "local":
        base = request.getfixturevalue(f"{request.param}_url")
        root, _, query = base.partition("?")
        if request.param == "webhdfs" and "user=" not in query:
            query = "user=root"
        url = f"{root.rstrip('/')}/corrupt-{uuid.uuid4().hex[:12]}" + (f"?{query}" if query else "")
    cfg = load_config(env={}, overrides={
        # a pack per upload: scrub checks sealed packs, and a shared pack is sealed only when idle
        "storage": {"home": str(tmp_path / "home"), "url": url, **CHUNKS, "shared_pack_request_bytes": 0},
        "security": FAST_SCRYPT, "jobs": JOBS_TEST})
    (tmp_path / "home").mkdir()
    clock.reset()
    d = Drive(cfg)
    migrate(d.engine)
    d.backend_name = request.param
    yield d
    clock.reset()
    d.close()


def content(i: int, size: int) -> bytes:
    """Seeded file contents: random bytes (stored raw) or word salad (stored zstd)."""
    rng = random.Random(1000 + i)
    if i % 3:
        return rng.randbytes(size)
    out = bytearray()
    while len(out) < size:
        out += rng.choice(WORDS) + b" %d " % rng.randrange(10**6)
    return bytes(out[:size])


def racing_put(d, user, name_a, name_b, data):
    """Two uploads of ``data`` where B commits while A is between writing its pack and its
    commit: B's blocks are the live ones, A's pack keeps a second (dead) copy of each."""
    def b_commits_first():
        del d.hooks["put:before_commit"]
        d.put(user.id, user.root_id, name_b, io.BytesIO(data))
    d.hooks["put:before_commit"] = b_commits_first
    a = d.put(user.id, user.root_id, name_a, io.BytesIO(data))
    assert a.new_bytes > 0  # A wrote its own copy: it found none of B's blocks when it looked
    return a.node.id, d.resolve(user.id, f"/{name_b}").id


def flip_bytes(d, chosen, rng) -> dict[bytes, int]:
    """One byte flipped (XOR a random non-zero value) inside each chosen block's record,
    the pack rewritten in place through its backend. Returns where, within each record."""
    where = {}
    by_pack = defaultdict(list)
    for k, loc in enumerate(chosen):
        by_pack[loc.url].append((k, loc))
    for url, locs in by_pack.items():
        backend, key = d.blocks.backend_for(url)
        data = bytearray(backend.read(key))
        for k, loc in locs:
            rel = rng.choice(HEADER_FIELDS) if k % 5 == 4 else packfmt.RECORD_HEADER + rng.randrange(loc.stored_size)
            data[loc.offset_in_pack + rel] ^= rng.randrange(1, 256)
            where[loc.id] = rel
        backend.put(key, bytes(data))
    return where


def check_reads(d, user, files, file_blocks, damaged) -> dict:
    """Read every file whole: exact bytes if none of its blocks is damaged, else an
    IntegrityError naming one of them after a correct prefix. Returns the counts."""
    out = {"intact": 0, "failed_clearly": 0, "wrong_bytes": 0, "lost": 0}
    for nid, data in files.items():
        got = bytearray()
        try:
            for chunk in d.open(user.id, nid)[2]:
                got += chunk
        except IntegrityError as exc:
            assert data.startswith(bytes(got)), f"file {nid}: wrong bytes before the error"
            assert exc.details.get("block") in {b.hex() for b in file_blocks[nid] & damaged}, exc
            out["failed_clearly"] += 1
            continue
        if bytes(got) != data:
            out["wrong_bytes"] += 1
        elif file_blocks[nid] & damaged:
            out["wrong_bytes"] += 1  # a damaged block cannot have read back right
        else:
            out["intact"] += 1
    out["lost"] = sum(1 for nid in files if not file_blocks[nid] & damaged) - out["intact"]
    return out


def http_downloads(tmp_path, d, token, files, file_blocks, first_blocks, damaged) -> int:
    """Through the real server: each damaged file's download is a 500 problem (first block
    bad) or a body cut short (a later block bad); never a complete 200. Returns how many
    downloads were checked."""
    from tests.e2e.conftest import start_server, stop_server
    proc, srv = start_server(tmp_path, None)
    checked = 0
    try:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        for nid, data in files.items():
            if not file_blocks[nid] & damaged:
                continue
            r = http.get(f"{srv.url}/api/v1/nodes/{nid}/content", stream=True, timeout=60)
            if first_blocks[nid] in damaged:
                assert r.status_code == 500 and r.headers["Content-Type"] == "application/problem+json", r.text
                assert r.json()["type"].endswith("/integrity-error")
            else:
                assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
                got = bytearray()
                with pytest.raises(requests.exceptions.RequestException):
                    for chunk in r.iter_content(65536):
                        got += chunk
                assert len(got) < len(data) and data.startswith(bytes(got))
            checked += 1
    finally:
        stop_server(proc)
    return checked


def test_corruption_injection(corrupt_drive, spark, tmp_path):  # noqa: F811
    from jobs.runner import run_job
    d, backend = corrupt_drive, corrupt_drive.backend_name
    n = faults_for(backend)
    user, token = d.create_user("corrupt@example.com", "password123")

    # ~10 distinct blocks per 48 KiB file: about 3 blocks stored for each fault injected.
    files = {}
    for i in range(max(8, n // 3)):
        data = content(i, 48 * 1024)
        files[d.put(user.id, user.root_id, f"f{i:04d}", io.BytesIO(data)).node.id] = data
    race = content(99_999, 32 * n * 4096 // 100)  # ~8% of the blocks, with a second copy each
    a, b = racing_put(d, user, "race-a", "race-b", race)
    files[a] = files[b] = race

    with d.sm() as s:
        live = s.execute(sa.select(Block.id, Block.stored_size, Block.offset_in_pack, Pack.url)
                         .join(Pack, Pack.id == Block.pack_id).order_by(Block.id)).all()
        refs = s.execute(sa.select(FileVersion.node_id, VersionBlock.seq, VersionBlock.block_id)
                         .join(VersionBlock, VersionBlock.version_id == FileVersion.id)
                         .order_by(FileVersion.node_id, VersionBlock.seq)).all()
    file_blocks, first_blocks = defaultdict(set), {}
    for nid, _seq, bid in refs:
        file_blocks[nid].add(bid)
        first_blocks.setdefault(nid, bid)
    copied = file_blocks[b]
    assert len(live) >= 3 * n, f"only {len(live)} blocks for {n} faults"

    rng = random.Random(4242)
    chosen = rng.sample(live, n)
    damaged = {c.id for c in chosen}
    assert damaged & copied, "no fault landed on a block with a second copy: the repair goes untested"
    where = flip_bytes(d, chosen, rng)

    before = check_reads(d, user, files, file_blocks, damaged)
    assert before["wrong_bytes"] == 0 and before["lost"] == 0, before
    assert before["failed_clearly"] == sum(1 for nid in files if file_blocks[nid] & damaged)

    scrub = run_job("scrub", d, spark)
    st = scrub.stats
    reported = {p["block"] for p in st["problems"]}
    missed = {x.hex(): where[x] for x in damaged if x.hex() not in reported}
    assert st["bad_records"] == n and st["live_blocks_damaged"] == n, f"missed (byte in record): {missed}"
    assert None not in reported and reported <= {x.hex() for x in damaged}
    if n <= 100:  # scrub lists its first 100 findings by name
        assert reported == {x.hex() for x in damaged}
    # Blocks with a clean copy elsewhere are repaired from it; every other one is named.
    assert set(st["unrepairable"]) == {x.hex() for x in damaged - copied}
    assert st["blocks_repaired"] == len(damaged & copied)
    detected = len(set(st["unrepairable"])) + st["blocks_repaired"]
    with d.sm() as s:  # the repaired blocks live in a new sealed pack now
        moved = s.execute(sa.select(Block.id, Pack.url, Pack.state).join(Pack, Pack.id == Block.pack_id)
                          .where(Block.id.in_(list(damaged & copied)))).all()
    was = {c.id: c.url for c in chosen}
    assert len(moved) == len(damaged & copied)
    assert all(r.state == "sealed" and r.url != was[r.id] for r in moved), moved

    after = check_reads(d, user, files, file_blocks, damaged - copied)
    assert after["wrong_bytes"] == 0 and after["lost"] == 0, after
    assert after["intact"] == before["intact"] + sum(
        1 for nid in files if file_blocks[nid] & damaged and not file_blocks[nid] & (damaged - copied))

    rep = fsck(d, deep=True)
    assert {p.kind for p in rep.problems} == {"corrupt-block"}, rep.problems[:5]
    named = {h for p in rep.problems for h in [x.hex() for x in damaged - copied] if h in p.detail}
    assert len(rep.problems) == len(damaged - copied) and named == {x.hex() for x in damaged - copied}

    downloads = 0
    if backend == "local":
        downloads = http_downloads(tmp_path, d, token, files, file_blocks, first_blocks, damaged - copied)
        assert downloads == after["failed_clearly"]

    figures.record(f"corruption injection ({backend})", faults=n, detected=detected, lost=0,
                   wrong_bytes_served=before["wrong_bytes"] + after["wrong_bytes"],
                   repaired=st["blocks_repaired"], failed_reads=before["failed_clearly"],
                   http_checked=downloads)
