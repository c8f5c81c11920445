"""Fixtures for tests that need the real services started by scripts/services.sh
(imported by tests/conftest.py, so every test directory can use them).

At import time this reads the env file written by ``scripts/services.sh up``
(``var/services.env``, or the path in $BLOCKDRIVE_SERVICES_ENV) into
os.environ; variables that are already set win.

Each fixture returns the service URL after checking that something answers
on its port (TCP connect, 3 s timeout). When a service is missing or down:

* BLOCKDRIVE_SKIP_SERVICES=1 (and CI is not true): the test is skipped;
* otherwise, and always when CI=true: the test fails, naming the service and
  how to start it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
START_HINT = "start it with `bash scripts/services.sh up` (from the repo root)"


def _env_file() -> Path:
    p = os.environ.get("BLOCKDRIVE_SERVICES_ENV")
    if p:
        path = Path(p)
        return path if path.is_absolute() else REPO_ROOT / path
    return REPO_ROOT / "var" / "services.env"


def load_services_env(path: Path | None = None) -> dict[str, str]:
    """Read KEY=value lines (no quoting, value is the rest of the line) into
    os.environ without overriding variables that are already set. Returns the
    parsed file. A missing file is not an error."""
    path = path or _env_file()
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, value = line.split("=", 1)
        key = key.strip()
        if key:
            values[key] = value
            os.environ.setdefault(key, value)
    return values


SERVICES_ENV = load_services_env()


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def engine_missing(msg: str) -> NoReturn:
    """A tool or engine a test needs (HAProxy, Java, MariaDB's binaries) is not installed: the
    test fails in CI, where the repo's scripts install it, and is skipped elsewhere."""
    if _ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _service_unavailable(service: str, detail: str) -> None:
    msg = f"{service} is not available: {detail}; {START_HINT}"
    if os.environ.get("BLOCKDRIVE_SKIP_SERVICES") == "1" and not _ci():
        pytest.skip(msg)
    pytest.fail(msg, pytrace=False)


def _require(service: str, var: str) -> str:
    value = os.environ.get(var)
    if not value:
        _service_unavailable(service, f"${var} is not set and {_env_file()} does not define it")
    return value


def _check_tcp(service: str, host: str, port: int, timeout: float = 3.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        _service_unavailable(service, f"cannot connect to {host}:{port} ({e})")


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """SQLAlchemy URL of the MariaDB test database (mysql+pymysql://...)."""
    url = _require("MariaDB", "BLOCKDRIVE_TEST_MYSQL_URL")
    _check_tcp("MariaDB", *_host_port(url, 3306))
    return url


@pytest.fixture(scope="session")
def webhdfs_url() -> str:
    """webhdfs://host:port/blockdrive-test (NameNode HTTP address + test dir)."""
    url = _require("HDFS (WebHDFS)", "BLOCKDRIVE_TEST_WEBHDFS_URL")
    _check_tcp("HDFS (WebHDFS)", *_host_port(url, 9870))
    return url


@pytest.fixture(scope="session")
def hdfs_url() -> str:
    """hdfs://host:port/blockdrive-test (NameNode RPC address + test dir)."""
    url = _require("HDFS (NameNode RPC)", "BLOCKDRIVE_TEST_HDFS_URL")
    _check_tcp("HDFS (NameNode RPC)", *_host_port(url, 8020))
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """http://host:port of the S3-compatible test server."""
    url = _require("S3 (moto)", "BLOCKDRIVE_TEST_S3_ENDPOINT")
    _check_tcp("S3 (moto)", *_host_port(url, 80))
    return url


@pytest.fixture(scope="session")
def s3_url() -> str:
    """s3://bucket/prefix?endpoint=http://host:port&region=... for the test bucket."""
    url = _require("S3 (moto)", "BLOCKDRIVE_TEST_S3_URL")
    endpoint = parse_qs(urlsplit(url).query).get("endpoint", [None])[0]
    if endpoint is None:
        endpoint = _require("S3 (moto)", "BLOCKDRIVE_TEST_S3_ENDPOINT")
    _check_tcp("S3 (moto)", *_host_port(endpoint, 80))
    return url
