"""The real server for the end-to-end tests, on SQLite or (integration) MariaDB. Starting and
stopping it lives in ``harness.server`` (shared with bench/); its names are re-exported here for
the tests that import them from this module."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess

import pytest

from harness.server import BIN, Client, start_server, stop_server
from tests.services import engine_missing

__all__ = ["BIN", "Client", "start_server", "stop_server", "ENGINES", "served", "own_mysql_database",
           "require_tool"]

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


def require_tool(names: tuple[str, ...], install: str) -> str:
    """The path of the first of ``names`` installed; without one the test is skipped, and in
    CI (CI=true) it fails, saying how to install it."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if path is not None:
            return path
    engine_missing(f"{names[0]} is not installed ({install})")


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
