"""Two schedulers on one MariaDB database: the leader is SIGKILLed in the middle of a job, the
other takes the lease, the interrupted run is recorded and the job completes on its next run."""

from __future__ import annotations

import json

from rehearsal.schedulers import scheduler_failover
from tests.e2e.conftest import own_mysql_database, require_tool


def test_killing_the_leading_scheduler_mid_job_hands_over_and_the_job_completes(tmp_path, mysql_url):
    require_tool(("java",), "apt-get install default-jre-headless: Spark runs in a JVM")
    with own_mysql_database(mysql_url) as database_url:
        f = scheduler_failover(tmp_path, database_url, (tmp_path / "packs").as_uri(), quick=True)
    print(json.dumps(f, indent=1, default=str))
    assert f["victim_held_job_lease"], "the killed leader was not the one running the job"
    # never two leaders: by each process's own log, and by the lease sampled from the database
    assert f["most_leaders_at_once"] == 1, f["leaderships"]
    assert f["lease_samples"] > 0 and f["unknown_holder_samples"] == 0
    assert f["took_over"]
    assert f["holders_after_kill"] in ([f["killed_leader"], f["new_leader"]], [f["new_leader"]]), f["holders_in_order"]
    # the bound, with a wide margin for this loaded machine: the figure is takeover_s
    assert f["takeover_s"] < 3 * f["takeover_bound_s"]
    assert f["interrupted_recorded_crashed"], f["interrupted_run"]
    assert f["next_run_completed"], f["next_run"]
    assert f["restarted_follows"], (f["leader_after_restart"], f["leaderships"])
    assert f["fsck_clean"], f["fsck"]
