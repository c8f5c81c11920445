"""A real server for tests and benchmarks: ``blockdrive init`` then ``blockdrive serve`` (gunicorn)
as a subprocess on a free port, against a temporary BLOCKDRIVE_HOME, on SQLite or on the database
URL given; ``Server`` and ``Client`` are thin HTTP handles on it."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from urllib3.util.retry import Retry

BIN = Path(sys.executable).parent / "blockdrive"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND"})


def http_session() -> requests.Session:
    """A requests session that, as browsers and sync clients do (RFC 9112, 9.3.1), sends a safe
    request once more when the connection it reused was reset as the request went out: gunicorn
    closes a connection idle for 2 s, and on a busy machine that close and the client's next
    request can cross. A request that changes something is never sent twice, and a server that
    is down is still an error at once (no retry of the connect)."""
    s = requests.Session()
    retry = Retry(total=1, connect=0, read=1, status=0, other=0, allowed_methods=SAFE_METHODS,
                  respect_retry_after_header=False, raise_on_status=False)  # a 429 or 503 is the test's to see
    s.mount("http://", requests.adapters.HTTPAdapter(max_retries=retry))
    return s


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running server: its base ``url``, the environment its CLI runs with, its home folder."""

    def __init__(self, url: str, env: dict, home: Path):
        self.url, self.env, self.home = url, env, home
        self.http = http_session()

    def cli(self, *args) -> str:
        """Run ``blockdrive *args`` against this server's home; its stdout (it must succeed)."""
        out = subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def user(self, email: str | None = None, premium: bool = False, admin: bool = False) -> "Client":
        """A new user (``blockdrive user create``) and a client holding its token."""
        email = email or f"u{secrets.token_hex(4)}@example.com"
        token = self.cli("user", "create", email, "--password", "password123",
                         *(["--premium"] if premium else []), *(["--admin"] if admin else [])
                         ).strip().splitlines()[-1]
        c = Client(self.url, token)
        c.email = email
        c.account = c.get("/api/v1/account").json()
        c.id, c.root = c.account["id"], c.account["root_id"]
        return c

    def anon(self) -> "Client":
        return Client(self.url, None)


class Client:
    """HTTP calls on the API as one user (a bearer token) or anonymously (``token`` None).
    ``Server.user`` fills in the account fields below."""

    email: str
    account: dict
    id: int
    root: int

    def __init__(self, base: str, token: str | None):
        self.base, self.token = base, token
        self.s = http_session()
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw):
        return self.s.request(method, self.base + path, timeout=120, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def upload(self, parent: int, name: str, data: bytes, **kw):
        return self.put(f"/api/v1/nodes/{parent}/children/{name}", data=data, **kw)

    def mkdir(self, parent: int, name: str) -> dict:
        r = self.post(f"/api/v1/nodes/{parent}/children", json={"name": name, "kind": "folder"})
        assert r.status_code == 201, r.text
        return r.json()


def start_server(tmp: Path, db_url: str | None, workers: int = 2, extra_env: dict | None = None):
    """``blockdrive init`` and ``blockdrive serve`` in ``tmp`` (SQLite when ``db_url`` is None),
    with small chunks unless ``extra_env`` says otherwise; returns ``(process, Server)`` once
    /readyz answers. The server's output goes to ``tmp/server.log``."""
    home = tmp / "home"
    env = {**os.environ, "BLOCKDRIVE_HOME": str(home), "BLOCKDRIVE_SECURITY_SCRYPT_N": "1024",
           "BLOCKDRIVE_STORAGE_CHUNK_MIN": str(64 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(256 * 1024),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(1024 * 1024), **(extra_env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if db_url:
        env["BLOCKDRIVE_DATABASE_URL"] = db_url
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = subprocess.run([str(BIN), "init"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too busy to answer
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start:\n" + (tmp / "server.log").read_text())
        time.sleep(0.2)
    return proc, Server(url, env, home)


def stop_server(proc) -> None:
    """Stop a server started by ``start_server``: terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
