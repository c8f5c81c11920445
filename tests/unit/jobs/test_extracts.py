"""The jobs read metadata through storage.extracts selects, never SQL text."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy.dialects import mysql

from storage import extracts
from storage.states import PackState

JOBS = Path(__file__).resolve().parents[3] / "jobs"


def test_no_sql_text_in_the_jobs():
    for path in JOBS.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bSELECT\b|sa\.text\(", text), path.name


def test_a_jdbc_query_has_its_states_and_dates_written_inline():
    sql = extracts.to_sql(extracts.packs("id", "url", states=(PackState.SEALED, PackState.RETIRING)),
                          mysql.dialect())
    assert "packs.state IN ('sealed', 'retiring')" in sql
    sql = extracts.to_sql(extracts.traffic_since(dt.date(2026, 1, 2)), mysql.dialect())
    assert "CAST(traffic_daily.day AS CHAR) AS day" in sql and "'2026-01-02'" in sql


def test_extracts_read_what_the_drive_wrote(drive, make_user):
    from tests.conftest import put_bytes, rand
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(100_000, 1))
    with drive.engine.connect() as conn:
        files = conn.execute(extracts.current_files()).all()
        owners = conn.execute(extracts.version_owners("size", "nblocks")).all()
        sealed = conn.execute(extracts.packs("id")).all()
        lo, hi = conn.execute(extracts.partition_bounds("file_versions", "id")).one()
    assert files == [(u.id, 100_000, 0)]
    assert [(o, s) for o, s, _ in owners] == [(u.id, 100_000)]
    assert sealed and lo == hi == f.version_id
