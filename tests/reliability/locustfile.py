"""Load on a running blockdrive server, for ``tests/reliability/test_load.py`` (run by locust in
a process of its own: locust's gevent must never be imported into the pytest process).

Each simulated user works in a folder of its own (so it alone decides what its files hold)
with one of the API tokens in ``BLOCKDRIVE_LOAD_TOKENS`` (comma-separated), and mixes:

- uploads of various sizes, new files and new versions of existing ones; a third of them
  carry content from a small shared pool, so that blocks are deduplicated across users;
  the response's ETag must be the SHA-256 of what was sent;
- downloads of a file it uploaded, the body's SHA-256 checked against what was sent;
- listings of its folder, which must name every file it uploaded with its size.

Every check that fails is reported to locust as a failure of that request.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random

from locust import HttpUser, between, task

TOKENS = [t for t in os.environ.get("BLOCKDRIVE_LOAD_TOKENS", "").split(",") if t]
SIZES = [(2 * 1024, 4), (60 * 1024, 4), (300 * 1024, 2), (1_200_000, 1), (3_000_000, 1)]  # (bytes, weight)
SHARED = [random.Random(seed).randbytes(size) for seed, (size, _) in enumerate(SIZES * 2)]
NAMES = 30  # files per user: later uploads are new versions
_seq = itertools.count()


class DriveUser(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self):
        n = next(_seq)
        self.rng = random.Random(n)
        self.client.headers["Authorization"] = f"Bearer {TOKENS[n % len(TOKENS)]}"
        root = self.client.get("/api/v1/account", name="account").json()["root_id"]
        r = self.client.post(f"/api/v1/nodes/{root}/children", name="mkdir",
                             json={"name": f"load-{n}-{os.getpid()}", "kind": "folder"})
        self.folder = r.json()["id"]
        self.files: dict[str, tuple[int, str, int]] = {}  # name -> (node id, sha256, size)

    def _content(self) -> bytes:
        if self.rng.random() < 0.33:
            return self.rng.choice(SHARED)
        size = self.rng.choices([s for s, _ in SIZES], [w for _, w in SIZES])[0]
        return self.rng.randbytes(self.rng.randrange(size // 2, size + 1))

    @task(3)
    def upload(self):
        name = f"f{self.rng.randrange(NAMES)}.bin"
        data = self._content()
        digest = hashlib.sha256(data).hexdigest()
        with self.client.put(f"/api/v1/nodes/{self.folder}/children/{name}", data=data, name="upload",
                             catch_response=True) as r:
            if r.status_code not in (200, 201):
                r.failure(f"upload: {r.status_code} {r.text[:200]}")
                return
            node = r.json()
            if node.get("etag") != digest or node.get("size") != len(data):
                r.failure(f"upload: server says {node.get('etag')}/{node.get('size')}, sent {digest}/{len(data)}")
                return
            self.files[name] = (node["id"], digest, len(data))

    @task(4)
    def download(self):
        if not self.files:
            return
        node_id, digest, size = self.files[self.rng.choice(sorted(self.files))]
        with self.client.get(f"/api/v1/nodes/{node_id}/content", name="download", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"download: {r.status_code} {r.text[:200]}")
            elif len(r.content) != size or hashlib.sha256(r.content).hexdigest() != digest:
                r.failure(f"download: WRONG BYTES for node {node_id} ({len(r.content)} of {size} bytes)")

    @task(2)
    def listing(self):
        with self.client.get(f"/api/v1/nodes/{self.folder}/children?limit=100", name="list",
                             catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"list: {r.status_code} {r.text[:200]}")
                return
            seen = {i["name"]: (i["id"], i["size"]) for i in r.json()["items"]}
            wrong = [n for n, (nid, _d, size) in self.files.items() if seen.get(n) != (nid, size)]
            if wrong:
                r.failure(f"list: {len(wrong)} files missing or with the wrong size, e.g. {wrong[0]}")
