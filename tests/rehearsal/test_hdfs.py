"""The HDFS tier's failover drill, quick: a DataNode of a replication-3 MiniDFSCluster is stopped
while a server uploads and downloads packs there, then restarted. Nothing acknowledged may be lost
or differ, replication must be whole again, and ``fsck --deep`` clean."""

import json


from rehearsal.hdfs import hdfs_failover, launcher_problem
from tests.services import engine_missing


def test_datanode_death_loses_nothing(tmp_path):
    problem = launcher_problem()
    if problem:  # in CI scripts/services.sh builds the launcher
        engine_missing(problem)
    figures = hdfs_failover(tmp_path, database_url=None, quick=True)
    print(json.dumps(figures, indent=1))
    assert figures["uploads_acknowledged"] > 0
    assert figures["load"]["datanode_down"].get("uploads_acknowledged", 0) > 0  # writes went on
    assert figures["lost_acknowledged_writes"] == 0
    assert figures["different_reads"] == 0
    assert sum(phase.get("uploads_failed_after_retry", 0) for phase in figures["load"].values()) == 0
    # the NameNode did see the DataNode die (2 live), and the cluster came back to 3
    assert min(live for _, live, _ in figures["live_datanodes_over_time"]) == 2
    assert figures["under_replicated_peak"] > 0
    assert figures["under_replicated_after"] == 0 and figures["missing_blocks_after"] == 0
    assert figures["fsck_clean"], figures["fsck"]
