"""Tiny blocks through the real server share a pack per server process: many one-byte block
PUTs make a few pack files, not one each, and every acknowledged block survives a SIGKILL of
the whole server (its shared packs left open, without a footer) and reads back after a
restart; fsck --deep then passes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from storage import pack as packfmt
from tests.e2e.conftest import BIN, Client, own_mysql_database, start_server, stop_server

# the packs are still open when the server is killed, however slowly the test machine runs
KEEP_OPEN = {"BLOCKDRIVE_STORAGE_SHARED_PACK_IDLE_SECONDS": "600"}


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db_url(request):
    if request.param == "sqlite":
        yield None
    else:
        with own_mysql_database(request.getfixturevalue("mysql_url")) as url:
            yield url


def _pack_files(home) -> list:
    return [p for p in (home / "packs").rglob("*.pack")]


def test_tiny_blocks_share_packs_and_survive_a_sigkill(tmp_path, db_url):
    proc, srv = start_server(tmp_path, db_url, workers=2, extra_env=KEEP_OPEN)
    try:
        u = srv.user()
        blocks = [bytes([i]) for i in range(200)]

        def put(x):
            r = u.put(f"/api/v1/blocks/{hashlib.sha256(x).hexdigest()}", data=x)
            return r.status_code

        with ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(put, blocks))
        assert codes == [201] * len(blocks)  # every block acknowledged
        # one shared pack per worker process, not one pack file per block
        assert 1 <= len(_pack_files(srv.home)) <= 4
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no seal, no footer, no atexit
        proc.wait()
    # what the kill left: shared packs without a footer, which blocks already point to
    assert any(packfmt.read_trailer(f.read_bytes()) is None for f in _pack_files(srv.home))

    proc, srv2 = start_server(tmp_path, db_url, workers=2, extra_env=KEEP_OPEN)
    try:
        u2 = Client(srv2.url, u.token)
        content = b"".join(blocks)
        sha = hashlib.sha256(content).hexdigest()
        r = u2.post(f"/api/v1/nodes/{u.root}/children/all.bin/commit",
                    json={"blocks": [hashlib.sha256(x).hexdigest() for x in blocks], "size": len(content),
                          "sha256": sha})
        assert r.status_code == 201, r.text
        assert u2.get(f"/api/v1/nodes/{r.json()['id']}/content").content == content
    finally:
        stop_server(proc)
    out = subprocess.run([str(BIN), "fsck", "--deep"], env=srv2.env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
