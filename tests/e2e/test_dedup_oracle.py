"""No dedup oracle: sending content someone else stores answers exactly as sending new content.

User A stores 1,000 blocks (and a few whole files). User B then sends, interleaved, the 1,000
blocks A has and 1,000 blocks nobody has, through every way in (``PUT /blocks/{sha256}``,
``POST /batch/blocks``, commits of block lists, plain PUT uploads, tus), and the answers for
the two groups are compared: status codes, bodies with ids, hashes and times normalised,
headers (minus Date and those carrying ids or content hashes, normalised the same way) and
B's used bytes. Any difference would tell B that someone stores a given content; the figures
row counts them (``detected``) and the test requires none. The "missing" answer counts only
the caller's own blocks.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from storage.batch import FRAME
from tests.e2e.conftest import Client
from tests.reliability import figures

N = 1000
BLOCK = 256  # bytes: small, so 2,000 round trips stay quick
WORKERS = 4
TUS = {"Tus-Resumable": "1.0.0"}
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?")
IDS = {"id", "parent_id", "version_id", "node_id"}
DROP = {"date", "content-length", "server", "etag", "x-request-id"}  # length varies with an id's digits


def _norm_value(key, value):
    if isinstance(value, dict):
        return {k: _norm_value(k, v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_norm_value(key, v) for v in value]
    if key in IDS and isinstance(value, int):
        return "<id>"
    if isinstance(value, str):
        return ISO.sub("<time>", HEX64.sub("<hash>", value))
    return value


def signature(r) -> tuple:
    """What a client can observe of a response, minus what names a particular object."""
    headers = tuple(sorted(
        (k.lower(), re.sub(r"\d+", "<n>", re.sub(r"[0-9a-f]{32,}", "<hex>", v))
         if k.lower() in ("location", "x-blockdrive-node-id", "upload-expires", "x-blockdrive-version") else v)
        for k, v in r.headers.items() if k.lower() not in DROP))
    try:
        body = repr(_norm_value(None, r.json())) if r.content else ""
    except ValueError:
        body = HEX64.sub("<hash>", r.text)
    return r.status_code, body, headers


def _used(c) -> int:
    return c.get("/api/v1/account").json()["used_bytes"]


def _frames(blocks) -> bytes:
    return b"".join(FRAME.pack(hashlib.sha256(b).digest(), len(b)) + b for b in blocks)


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_known_and_fresh_content_answer_alike(server):
    a, b = server.user(), server.user()
    known = [os.urandom(BLOCK) for _ in range(N)]
    fresh = [os.urandom(BLOCK) for _ in range(N)]
    kh = [hashlib.sha256(x).hexdigest() for x in known]
    fh = [hashlib.sha256(x).hexdigest() for x in fresh]

    # A stores the known blocks as a file of its own, and two whole files
    assert a.post("/api/v1/batch/blocks", data=_frames(known)).status_code == 200
    content = b"".join(known)
    r = a.post(f"/api/v1/nodes/{a.root}/children/a-blocks.bin/commit",
               json={"blocks": kh, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    assert r.status_code == 201, r.text
    big_known, big_fresh = os.urandom(700_000), os.urandom(700_000)  # a few content-defined blocks each
    tus_known, tus_fresh = os.urandom(300_000), os.urandom(300_000)
    assert a.upload(a.root, "a-file.bin", big_known).status_code == 201
    assert a.upload(a.root, "a-tus.bin", tus_known).status_code == 201

    # "missing" counts the caller's own blocks only: B lacks all 2,000, A only the fresh ones
    everything = kh + fh
    assert b.post("/api/v1/blocks/missing", json={"hashes": everything}).json()["missing"] == everything
    assert a.post("/api/v1/blocks/missing", json={"hashes": everything}).json()["missing"] == fh

    sig: dict[str, Counter] = {"known": Counter(), "fresh": Counter()}
    used: dict[str, list[int]] = {"known": [], "fresh": []}

    def probe(group: str, send) -> None:
        before = _used(b)
        sig[group][signature(send())] += 1
        used[group].append(_used(b) - before)

    # 1. the block API, one block at a time, the two groups interleaved, on a few connections
    def put_blocks(part):
        c = Client(server.url, b.token)
        return [(g, signature(c.put(f"/api/v1/blocks/{h}", data=data))) for g, data, h in part]
    jobs = [t for i in range(N) for t in (("known", known[i], kh[i]), ("fresh", fresh[i], fh[i]))]
    with ThreadPoolExecutor(WORKERS) as pool:
        for results in pool.map(put_blocks, [jobs[k::WORKERS] for k in range(WORKERS)]):
            for group, sg in results:
                sig[group][sg] += 1
    # sending them again: "you sent this already", alike for both
    for group, data, h in (("known", known[0], kh[0]), ("fresh", fresh[0], fh[0])):
        probe(group, lambda: b.put(f"/api/v1/blocks/{h}", data=data))
    # after sending, B's "missing" answer treats both groups as B's own
    assert b.post("/api/v1/blocks/missing", json={"hashes": everything}).json()["missing"] == []

    # 2. a batch of blocks each, a commit of each list, a batch commit of each
    b.mkdir(b.root, "known")
    b.mkdir(b.root, "fresh")
    folders = {f["name"]: f["id"] for f in b.get(f"/api/v1/nodes/{b.root}/children").json()["items"]}
    for group, blocks, hashes in (("known", known, kh), ("fresh", fresh, fh)):
        body = b"".join(blocks)
        sha = hashlib.sha256(body).hexdigest()
        parent = folders[group]
        probe(group, lambda: b.post("/api/v1/batch/blocks", data=_frames(blocks)))
        probe(group, lambda: b.post(f"/api/v1/nodes/{parent}/children/blocks.bin/commit",
                                    json={"blocks": hashes, "size": len(body), "sha256": sha}))
        probe(group, lambda: b.post("/api/v1/batch/commit", json={"files": [
            {"parent_id": parent, "name": "batch.bin", "blocks": hashes[:500], "size": 500 * BLOCK,
             "sha256": hashlib.sha256(body[:500 * BLOCK]).hexdigest()}]}))

    # 3. whole files: a plain PUT (with a Content-Length and chunked), a new version, tus
    for group, data, tdata in (("known", big_known, tus_known), ("fresh", big_fresh, tus_fresh)):
        parent = folders[group]
        probe(group, lambda: b.upload(parent, "file.bin", data))
        probe(group, lambda: b.upload(parent, "chunked.bin", iter([data[:300_000], data[300_000:]])))
        probe(group, lambda: b.upload(parent, "file.bin", data[::-1]))  # a new version (content fresh to all)
        probe(group, lambda: b.upload(parent, "file.bin", data))  # back to the first content
        probe(group, lambda: b.post("/api/v1/uploads", data=tdata, headers={
            **TUS, "Upload-Length": str(len(tdata)), "Content-Type": "application/offset+octet-stream",
            "Upload-Metadata": f"filename {_b64('tus.bin')},parent_id {_b64(str(parent))}"}))

    # the two groups answer alike, request for request, and cost B the same
    differences = sum(((sig["known"] - sig["fresh"]) + (sig["fresh"] - sig["known"])).values())
    differences += sum(x != y for x, y in zip(used["known"], used["fresh"]))
    figures.record("dedup oracle", faults=2 * N, detected=differences, requests=sum(sig["known"].values()) * 2)
    assert sig["known"] == sig["fresh"], "\n".join(
        f"{g} only: {item}" for g, o in (("known", "fresh"), ("fresh", "known")) for item in (sig[g] - sig[o]))
    assert used["known"] == used["fresh"], used
    # and the files B made read back right
    for group, data in (("known", big_known), ("fresh", big_fresh)):
        node = b.get("/api/v1/resolve", params={"path": f"/{group}/file.bin"}).json()
        assert b.get(f"/api/v1/nodes/{node['id']}/content").content == data
