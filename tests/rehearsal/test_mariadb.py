"""The MariaDB tier's failover, quick: a blockdrive server writing to a real primary and listing
folders from a real replica keeps answering while the replica is killed, the replica catches up
once restarted and serves again, and nothing acknowledged is lost."""

from __future__ import annotations

import json


from rehearsal.mariadb import mariadb_available, replica_failover
from tests.services import engine_missing


def test_replica_failover(tmp_path):
    if not mariadb_available():
        engine_missing("MariaDB (mariadbd, mariadb-install-db) is not installed: apt-get install mariadb-server")
    figures = replica_failover(tmp_path, quick=True)
    print(json.dumps(figures, indent=2))
    assert figures["replica_served_before_kill"], figures
    assert figures["listings_while_replica_down"] > 0, figures
    assert figures["listing_errors_while_replica_down"] == 0, figures
    assert figures["listing_errors"] == 0, figures
    assert figures["stale_listings"] == 0, figures
    assert figures["replica_served_again"], figures
    assert figures["upload_errors"] == 0, figures
    assert figures["acknowledged_uploads"] > 0, figures
    assert figures["lost_acknowledged_writes"] == 0, figures
    assert figures["tables_equal"], figures
    assert figures["fsck_clean"], figures
