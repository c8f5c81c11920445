"""``pip install 'blockdrive[client]'`` into a fresh venv gives a working client without the server.

The package is installed (not editable) from a copy of the source tree, so nothing of this
checkout or of the test environment leaks in; the installed ``blockdrive`` then signs in to a
real server, pushes a file and pulls it back. It needs PyPI (requests, pyfastcdc, tqdm) and
takes a minute or two.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import rand
from tests.e2e.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("client", "storage", "jobs", "webapi")
SERVER_ONLY = ("flask", "sqlalchemy", "pyarrow", "gunicorn", "alembic")

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    shutil.copy(ROOT / "setup.py", src)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, env=env, timeout=120)
    out = subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                          f"{src}[client]"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return tmp / "venv"


def _clean_env(**extra) -> dict:
    """This process's environment without what would let the venv see this checkout or our venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("BLOCKDRIVE_")}
    return {**env, **extra}


def test_the_client_install_lacks_the_servers_packages(venv):
    probe = "import importlib.util as u; print(','.join(m for m in %r if u.find_spec(m)))" % (SERVER_ONLY,)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], env=_clean_env(), capture_output=True,
                         text=True, timeout=60, cwd=venv)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_help_offers_the_user_commands_and_says_how_to_get_the_operators(venv):
    out = subprocess.run([str(venv / "bin" / "blockdrive"), "--help"], env=_clean_env(), capture_output=True,
                         text=True, timeout=60, cwd=venv)
    assert out.returncode == 0, out.stderr
    assert "user commands" in out.stdout and "  push " in out.stdout and "  sync " in out.stdout
    assert "operator commands (" not in out.stdout and "  serve " not in out.stdout
    assert "blockdrive[server]" in out.stdout


def test_login_push_pull_round_trip_against_a_server(venv, tmp_path):
    proc, srv = start_server(tmp_path / "server", None)
    try:
        email = "laptop@example.com"
        srv.cli("user", "create", email, "--password", "password123")
        home = tmp_path / "laptop"
        home.mkdir()
        env = _clean_env(XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"),
                         BLOCKDRIVE_PASSWORD="password123")
        data = rand(3_000_000, 7)
        (home / "photo.bin").write_bytes(data)

        def blockdrive(*args) -> str:
            out = subprocess.run([str(venv / "bin" / "blockdrive"), *args], env=env, capture_output=True,
                                 text=True, timeout=120, cwd=home)
            assert out.returncode == 0, out.stderr
            return out.stdout

        blockdrive("login", "--url", srv.url, "--email", email)
        blockdrive("push", "photo.bin", "/laptop/photo.bin")
        blockdrive("pull", "/laptop/photo.bin", "back.bin")
        assert (home / "back.bin").read_bytes() == data
    finally:
        stop_server(proc)
