"""`blockdrive init`, `user create` and `serve` as a user runs them: real gunicorn, real HTTP."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent / "blockdrive"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_health_ready_and_account(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKDRIVE_") or k.startswith("BLOCKDRIVE_TEST_")}
    env.update(BLOCKDRIVE_HOME=str(tmp_path / "home"), BLOCKDRIVE_SECURITY_SCRYPT_N="1024")
    subprocess.run([BIN, "init"], env=env, check=True, capture_output=True)
    out = subprocess.run([BIN, "user", "create", "smoke@example.com", "--password", "longenough"],
                         env=env, check=True, capture_output=True, text=True).stdout
    token = out.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        banner = proc.stdout.readline() + proc.stdout.readline()
        assert f"listening on {base}" in banner
        for _ in range(100):
            try:
                if requests.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a worker still booting under load
                time.sleep(0.1)
        else:
            raise AssertionError("server did not come up")
        ready = requests.get(base + "/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "storage": "ok"}
        anon = requests.get(base + "/api/v1/account", timeout=5)
        assert anon.status_code == 401
        assert anon.headers["Content-Type"].startswith("application/problem+json")
        assert requests.get(base + "/api/v1/account", headers={"Authorization": "Bearer bd_wrong"},
                            timeout=5).status_code == 401
        me = requests.get(base + "/api/v1/account", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200
        body = me.json()
        assert body["email"] == "smoke@example.com" and body["plan"] == "free"
        assert body["quota_bytes"] == 15_000_000_000 and body["used_bytes"] == 0 and body["root_id"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_up(base: str) -> None:
    for _ in range(300):
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # a worker still booting under load
            pass
        time.sleep(0.1)
    raise AssertionError("server did not come up")


def test_readyz_fails_while_packs_cannot_be_written_and_recovers(tmp_path):
    """/readyz writes to the pack backend: with the packs folder gone (a file in its place) it
    answers 503 naming the storage, and 200 again once the folder is back; each answer also
    commits the worker's heartbeat row."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKDRIVE_") or k.startswith("BLOCKDRIVE_TEST_")}
    env.update(BLOCKDRIVE_HOME=str(home), BLOCKDRIVE_SECURITY_SCRYPT_N="1024",
               BLOCKDRIVE_SERVER_READY_PROBE_SECONDS="0")
    subprocess.run([BIN, "init"], env=env, check=True, capture_output=True)
    out = subprocess.run([BIN, "user", "create", "ready@example.com", "--password", "longenough"],
                         env=env, check=True, capture_output=True, text=True).stdout
    auth = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--port", str(port), "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    packs, aside = home / "packs", home / "packs-aside"
    try:
        wait_up(base)
        assert requests.get(base + "/readyz", timeout=30).status_code == 200
        root = requests.get(base + "/api/v1/account", headers=auth, timeout=30).json()["root_id"]
        before = os.urandom(300_000)
        first = requests.put(f"{base}/api/v1/nodes/{root}/children/before.bin", data=before, headers=auth,
                             timeout=60)
        assert first.status_code == 201

        packs.rename(aside)
        packs.write_bytes(b"not a folder")
        broken = requests.get(base + "/readyz", timeout=30)
        assert broken.status_code == 503
        body = broken.json()
        assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
        assert body["checks"]["storage"] != "ok" and "Traceback" not in body["checks"]["storage"]

        packs.unlink()
        aside.rename(packs)
        assert requests.get(base + "/readyz", timeout=30).json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
        after = os.urandom(300_000)
        made = requests.put(f"{base}/api/v1/nodes/{root}/children/after.bin", data=after, headers=auth, timeout=60)
        assert made.status_code == 201
        for made_by, data in ((first, before), (made, after)):
            got = requests.get(f"{base}/api/v1/nodes/{made_by.json()['id']}/content", headers=auth, timeout=60)
            assert got.status_code == 200 and got.content == data
        assert not [p for p in packs.rglob("*") if "readyz" in str(p.relative_to(packs)) and p.is_file()]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    import sqlite3
    with sqlite3.connect(home / "blockdrive.db") as db:
        rows = db.execute("SELECT host, pid, seen_at >= started_at FROM servers").fetchall()
    assert len(rows) == 1 and rows[0][2] == 1


def test_serve_refuses_an_uninitialised_database(tmp_path):
    env = dict(os.environ, BLOCKDRIVE_HOME=str(tmp_path / "empty"))
    res = subprocess.run([BIN, "serve", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1
    assert "blockdrive init" in res.stderr and "Traceback" not in res.stderr
