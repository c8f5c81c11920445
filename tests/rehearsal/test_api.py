"""The API tier's failover drill, quick: three API servers behind HAProxy on MariaDB and a local
pack folder, one killed with SIGKILL under a client load and restarted; nothing acknowledged is
lost, the clients' retries absorb every error, and work crosses servers."""

from __future__ import annotations

import json

from rehearsal.api import api_failover
from tests.e2e.conftest import own_mysql_database, require_tool


def test_api_server_killed_under_load_loses_nothing(mysql_url, tmp_path):
    require_tool(("haproxy",), "Debian: apt-get install haproxy; scripts/test.sh does")
    with own_mysql_database(mysql_url) as db_url:
        figures = api_failover(tmp_path / "cluster", db_url, str(tmp_path / "packs"), quick=True)
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
