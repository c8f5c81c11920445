"""A block session's lifetime is absolute, through the real server (SQLite and MariaDB): a
client that keeps sending blocks cannot keep their pins (and pending bytes) for ever. The
server runs with a four-second lifetime; the test waits past it rather than measuring it. The
session begun by the sends past the first outlives the checks by about three seconds."""

from __future__ import annotations

import hashlib
import time

import pytest

from storage.quota import BLOCK_FLOOR
from tests.e2e.conftest import ENGINES, served
from tests.e2e.test_api import problem

LIFETIME = 4


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "session", {"BLOCKDRIVE_QUOTA_BLOCK_SESSION_SECONDS": str(LIFETIME)}) as srv:
        yield srv


def _send(c, raw: bytes) -> str:
    h = hashlib.sha256(raw).hexdigest()
    r = c.put(f"/api/v1/blocks/{h}", data=raw)
    assert r.status_code in (200, 201), r.text
    return h


def _missing(c, hashes):
    return c.post("/api/v1/blocks/missing", json={"hashes": hashes}).json()["missing"]


def test_sending_blocks_does_not_extend_a_block_session_for_ever(server):
    c = server.user()
    a = _send(c, b"first block")
    deadline = time.monotonic() + LIFETIME + 1
    sent = [a]
    while time.monotonic() < deadline:  # busy all along: well within the idle expiry
        sent.append(_send(c, f"block {len(sent)}".encode()))
        time.sleep(0.2)
    last = _send(c, b"after the lifetime")
    # the session ended at its lifetime and a new one began: the old pins no longer count
    missing = _missing(c, [a, last])
    assert a in missing and last not in missing
    assert c.get("/api/v1/account").json()["pending_bytes"] < len(sent) * BLOCK_FLOOR
    data = b"first block"
    problem(c.post(f"/api/v1/nodes/{c.root}/children/f.bin/commit",
                   json={"blocks": [a], "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}), 400)
