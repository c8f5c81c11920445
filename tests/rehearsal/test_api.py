"""The API tier's failover drill, quick: three API servers behind HAProxy on MariaDB and a local
pack folder, one killed with SIGKILL under a client load and restarted; nothing acknowledged is
lost, the clients' retries absorb every error, and work crosses servers."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

from rehearsal.api import api_failover, haproxy_binary
from storage.db import make_engine


@pytest.fixture
def own_database(mysql_url):
    """A database of this test's own on the shared MariaDB, dropped afterwards (the servers
    run ``blockdrive init`` on it themselves)."""
    base = sa.engine.make_url(mysql_url)
    own = base.set(database=f"{base.database}_api_{os.getpid()}")
    server = make_engine(base.set(database=None).render_as_string(hide_password=False))
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{own.database}` CHARACTER SET utf8mb4")
    try:
        yield own.render_as_string(hide_password=False)
    finally:
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
        server.dispose()


def test_api_server_killed_under_load_loses_nothing(own_database, tmp_path):
    if haproxy_binary() is None:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail("HAProxy is missing: scripts/test.sh installs Debian's haproxy")
        pytest.skip("HAProxy is not installed (Debian: apt-get install haproxy)")
    figures = api_failover(tmp_path / "cluster", own_database, str(tmp_path / "packs"), quick=True)
    print(json.dumps(figures, indent=2))

    assert figures["lost_acknowledged_writes"] == 0
    assert figures["different_acknowledged_writes"] == 0
    assert figures["download_mismatches"] == 0
    assert figures["errors_after_retry"] == 0
    assert figures["verified"]["checked"] > 0 and figures["load"]["acknowledged_uploads"] > 0
    assert figures["failover"]["errors_after_retry"] == 0
    assert figures["killed_server_marked_down"] and figures["restarted_server_marked_up"]
    assert figures["restarted_server_took_requests"]
    assert figures["fsck_clean"], figures["fsck_output"]
    assert figures["cross_server"] == {**figures["cross_server"], "tus_patches_across_servers": True,
                                       "longpoll_woken_across_servers": True, "web_session_across_servers": True,
                                       "admin_session_across_servers": True}
