"""No dedup shortcut to time: through the real server, a block another user stores costs the
sender a pack write like a fresh block does (a new record appears on disk), and the answers
for both kinds are the same. The latency itself is measured in bench/dedup_timing.py, not here."""

from __future__ import annotations

import hashlib
import os

from storage.backends.local import LocalBackend
from storage.batch import FRAME
from storage.fsck import index_from_packs
from tests.e2e.test_dedup_oracle import signature

N = 20


def _records(server) -> tuple[int, int]:
    """(records, bytes) of every pack file the server wrote, footer or not."""
    backend = LocalBackend((server.home / "packs").as_uri())
    found = index_from_packs(backend)
    size = sum(n for k, n in backend.list("packs") if k.endswith(".pack"))
    return sum(len(v) for v in found.values()), size


def test_a_block_someone_else_stores_is_written_and_answered_like_a_fresh_one(server):
    a, b = server.user(), server.user()
    known = [os.urandom(700) for _ in range(N)]
    fresh = [os.urandom(700) for _ in range(N)]
    for x in known:
        r = a.put(f"/api/v1/blocks/{hashlib.sha256(x).hexdigest()}", data=x)
        assert r.status_code == 201, r.text
    records, size = _records(server)
    answers = {"known": [], "fresh": []}
    for k, f in zip(known, fresh):
        for kind, x in (("known", k), ("fresh", f)):
            answers[kind].append(signature(b.put(f"/api/v1/blocks/{hashlib.sha256(x).hexdigest()}", data=x)))
            after = _records(server)
            # every PUT, of either kind, appended one record to a pack on disk
            assert after[0] == records + 1 and after[1] > size, kind
            records, size = after
    assert answers["known"] == answers["fresh"]
    assert {s[0] for s in answers["known"]} == {201}

    # the batch route: a body of blocks A has and a body of fresh ones, written alike
    more_known, more_fresh = known[:5], [os.urandom(700) for _ in range(5)]
    c = server.user()
    got = []
    for blocks in (more_known, more_fresh):
        body = b"".join(FRAME.pack(hashlib.sha256(x).digest(), len(x)) + x for x in blocks)
        got.append(signature(c.post("/api/v1/batch/blocks", data=body)))
        after = _records(server)
        assert after[0] == records + len(blocks)
        records = after[0]
    assert got[0] == got[1]

    # B builds a file on a block A also has: it reads back, and A's copy is untouched
    x = known[0]
    h = hashlib.sha256(x).hexdigest()
    r = b.post(f"/api/v1/nodes/{b.root}/children/k.bin/commit", json={"blocks": [h], "size": len(x), "sha256": h})
    assert r.status_code == 201, r.text
    assert b.get(f"/api/v1/nodes/{r.json()['id']}/content").content == x


def test_a_small_file_someone_else_stores_is_written_and_answered_like_a_fresh_one(server):
    """A plain PUT and a tus upload of a one-block file whose content another user stores
    append a record to a pack like a fresh file does, with the same answers; only content
    the caller already has skips the write."""
    from tests.e2e.test_dedup_oracle import TUS, _b64
    a, b = server.user(), server.user()
    n = N // 2
    known = [os.urandom(5000) for _ in range(2 * n)]
    fresh = [os.urandom(5000) for _ in range(2 * n)]
    for i, x in enumerate(known):
        assert a.upload(a.root, f"a{i}.bin", x).status_code == 201
    folders = {kind: b.mkdir(b.root, kind)["id"] for kind in ("known", "fresh")}
    records, _ = _records(server)
    answers = {"known": [], "fresh": []}
    for i in range(n):
        for kind, xs in (("known", known), ("fresh", fresh)):
            parent, put, tus = folders[kind], xs[i], xs[n + i]
            answers[kind].append(signature(b.upload(parent, f"{i}.bin", put)))
            assert _records(server)[0] == records + 1, kind
            answers[kind].append(signature(b.post("/api/v1/uploads", data=tus, headers={
                **TUS, "Upload-Length": str(len(tus)), "Content-Type": "application/offset+octet-stream",
                "Upload-Metadata": f"filename {_b64(f't{i}.bin')},parent_id {_b64(str(parent))}"})))
            assert _records(server)[0] == records + 2, kind
            records += 2
    assert answers["known"] == answers["fresh"]
    assert {s[0] for s in answers["known"]} == {201}
    # B's own content again: nothing written, and both kinds still answer alike
    again = {}
    for kind, xs in (("known", known), ("fresh", fresh)):
        r = b.upload(folders[kind], "again.bin", xs[0])
        assert r.status_code == 201 and r.json()["new_bytes"] == 0, r.text
        again[kind] = signature(r)
    assert _records(server)[0] == records
    assert again["known"] == again["fresh"]
    for i in range(n):
        node = b.get("/api/v1/resolve", params={"path": f"/known/{i}.bin"}).json()
        assert b.get(f"/api/v1/nodes/{node['id']}/content").content == known[i]
        node = b.get("/api/v1/resolve", params={"path": f"/known/t{i}.bin"}).json()
        assert b.get(f"/api/v1/nodes/{node['id']}/content").content == known[n + i]
