"""docker/docker-compose.yml must validate (`docker compose config`; no engine needed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "docker-compose.yml"


def validator() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates():
    cmd = validator()
    if cmd is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("no compose validator: scripts/test.sh installs Debian's docker-compose")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    res = subprocess.run(cmd + ["-f", str(COMPOSE), "config"], capture_output=True, text=True,
                         env={**os.environ, "COMPOSE_PROJECT_NAME": "blockdrive"})
    assert res.returncode == 0, res.stderr
    services = res.stdout
    for name in ("namenode:", "datanode-3:", "mariadb-replica:", "minio:", "spark-worker:", "api-2:", "scheduler:", "lb:"):
        assert name in services
