"""``python -m rehearsal``'s own logic, without starting a cluster: parts are checked before
anything starts, and a part passes only when every one of its conditions held."""

from __future__ import annotations

import pytest

from rehearsal.__main__ import main, passed


def test_an_unknown_part_is_refused_before_anything_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--only", "cluster,bogus", "--folder", str(tmp_path / "r"), "--out", str(tmp_path / "o.json")])
    assert e.value.code == 2
    assert "unknown part(s) bogus" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("figures, ok", [
    ({"passed": True}, True),
    ({"passed": False}, False),
    ({"error": "RuntimeError: boom"}, False),
    ({"lost_acknowledged_writes": 0, "fsck_clean": True, "most_leaders_at_once": 1}, True),
    ({"lost_acknowledged_writes": 1, "fsck_clean": True}, False),
    ({"lost_acknowledged_writes": 0, "fsck_clean": False}, False),
    ({"took_over": True, "next_run_completed": False}, False),
    ({"most_leaders_at_once": 2}, False),
    ({"under_replicated_after": 3}, False),
])
def test_a_part_passes_only_when_every_condition_held(figures, ok):
    assert passed("any", figures) is ok
