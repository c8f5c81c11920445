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


def test_serve_refuses_an_uninitialised_database(tmp_path):
    env = dict(os.environ, BLOCKDRIVE_HOME=str(tmp_path / "empty"))
    res = subprocess.run([BIN, "serve", "--port", str(free_port())], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1
    assert "blockdrive init" in res.stderr and "Traceback" not in res.stderr
