"""The real server: ``blockdrive init`` then ``blockdrive serve`` (gunicorn) as a subprocess on
a free port, against a temporary BLOCKDRIVE_HOME, on SQLite or (integration) MariaDB."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "blockdrive"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, env: dict, home: Path):
        self.url, self.env, self.home = url, env, home
        self.http = requests.Session()

    def cli(self, *args) -> str:
        out = subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def user(self, email: str | None = None, premium: bool = False) -> "Client":
        email = email or f"u{secrets.token_hex(4)}@example.com"
        token = self.cli("user", "create", email, "--password", "password123",
                         *(["--premium"] if premium else [])).strip().splitlines()[-1]
        c = Client(self.url, token)
        c.email = email
        c.account = c.get("/api/v1/account").json()
        c.id, c.root = c.account["id"], c.account["root_id"]
        return c

    def anon(self) -> "Client":
        return Client(self.url, None)


class Client:
    def __init__(self, base: str, token: str | None):
        self.base, self.token = base, token
        self.s = requests.Session()
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
    home = tmp / "home"
    env = {**os.environ, "BLOCKDRIVE_HOME": str(home), "BLOCKDRIVE_SECURITY_SCRYPT_N": "1024",
           "BLOCKDRIVE_STORAGE_CHUNK_MIN": str(64 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(256 * 1024),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(1024 * 1024), **(extra_env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if db_url:
        env["BLOCKDRIVE_DATABASE_URL"] = db_url
    port = _free_port()
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
        except (requests.ConnectionError, requests.Timeout):  # a worker still booting under load
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start:\n" + (tmp / "server.log").read_text())
        time.sleep(0.2)
    return proc, Server(url, env, home)


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_db_seq = itertools.count()


@contextlib.contextmanager
def own_mysql_database(url: str):
    """A fresh database for one server, dropped afterwards. The server's packs live in a
    temporary directory of this run: rows left in a shared database by an earlier run
    would point at packs that no longer exist, and fsck would rightly fail."""
    import sqlalchemy as sa
    base = sa.engine.make_url(url)
    own = base.set(database=f"{base.database}_e2e_{os.getpid()}_{next(_db_seq)}")
    admin = sa.create_engine(base.set(database=None).render_as_string(hide_password=False))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{own.database}` CHARACTER SET utf8mb4")
    try:
        yield own.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
        admin.dispose()


ENGINES = ["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)]


@contextlib.contextmanager
def served(request, tmp_path_factory, name: str = "server", extra_env: dict | None = None, fsck: bool = True):
    """A real server on the fixture's engine (``request.param``: sqlite, or mariadb in a
    database of its own) with ``extra_env``; stopped afterwards, and then, with ``fsck``, the
    store it left must be consistent."""
    with contextlib.ExitStack() as stack:
        db_url = None if request.param == "sqlite" else \
            stack.enter_context(own_mysql_database(request.getfixturevalue("mysql_url")))
        proc, srv = start_server(tmp_path_factory.mktemp(name), db_url, extra_env=extra_env)
        try:
            yield srv
        finally:
            stop_server(proc)
        if fsck:
            out = subprocess.run([str(BIN), "fsck", "--deep"], env=srv.env, capture_output=True, text=True,
                                 timeout=300)
            assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory) as srv:
        yield srv
