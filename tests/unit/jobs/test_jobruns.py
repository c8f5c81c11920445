"""storage.jobruns: recording job runs, and one name per figure in their stats."""

from __future__ import annotations

import json

import sqlalchemy as sa

from storage import jobruns
from storage.jobruns import RunStats
from storage.models import JobRun
from storage.states import JobStatus


def test_old_spellings_of_bytes_freed_read_as_one():
    for old in ("swept_bytes", "bytes_deleted", "freed_bytes"):
        st = RunStats.from_json({old: 4096, "dry_run": True, "blocks": 7})
        assert (st.bytes_freed, st.dry_run, st.rows) == (4096, True, 7)
        assert st.to_json() == {"dry_run": True, "bytes_freed": 4096, "blocks": 7}
    assert RunStats.from_json({"bytes_freed": 5, "swept_bytes": 99}).bytes_freed == 5
    assert RunStats.from_json({}).to_json() == {"dry_run": False}


def test_start_marks_a_dead_run_crashed_and_finish_records_the_stats(drive):
    first = jobruns.start(drive.sm, "gc")
    second = jobruns.start(drive.sm, "gc", dry_run=True)  # the first one's process died
    jobruns.finish(drive.sm, second, JobStatus.OK, RunStats(dry_run=True, seconds=1.5, bytes_freed=10,
                                                             figures={"marked": 2}))
    with drive.sm() as s:
        rows = {r.id: r for r in s.execute(sa.select(JobRun)).scalars()}
    assert rows[first].status == JobStatus.CRASHED and rows[first].finished_at is not None
    assert json.loads(rows[second].stats) == {"dry_run": True, "seconds": 1.5, "bytes_freed": 10, "marked": 2}
    hist = jobruns.history(drive.sm, job="gc")
    assert [(r["id"], r["status"]) for r in hist] == [(second, "ok"), (first, "crashed")]


def test_history_reads_an_old_run_under_the_one_name(drive):
    with drive.sm() as s, s.begin():
        s.add(JobRun(job="compact", status="ok", stats=json.dumps({"bytes_deleted": 77, "packs_deleted": 1})))
    (run,) = jobruns.history(drive.sm)
    assert run["stats"] == {"dry_run": False, "bytes_freed": 77, "packs_deleted": 1}
