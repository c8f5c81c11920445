"""The trash's exact-path match (client.trash): a path picks only entries deleted at that very
path, never one of the same name elsewhere."""

from __future__ import annotations

import pytest

from client.api import ClientError, NotFoundError
from client.trash import match, pick

ENTRIES = [  # newest first, as the server lists them
    {"id": 9, "name": "f.txt", "path": "/a/sub0/f.txt", "deleted_at": "2026-01-02T00:00:00"},
    {"id": 5, "name": "f.txt", "path": "/a/sub1/f.txt", "deleted_at": "2026-01-01T00:00:00"},
    {"id": 7, "name": "f.txt", "path": "/a/sub1/f.txt", "deleted_at": "2026-01-01T00:00:00"},
    {"id": 3, "name": "g.txt", "path": None, "deleted_at": "2025-12-01T00:00:00"},
]


def test_match_is_exact_and_newest_first():
    # 5 and 7 were deleted in the same second: the node made later counts as the newer
    assert [e["id"] for e in match(ENTRIES, "/a/sub1/f.txt")] == [7, 5]
    assert [e["id"] for e in match(ENTRIES, "a//sub0/f.txt/")] == [9]


def test_no_match_names_the_entries_of_that_name():
    with pytest.raises(NotFoundError, match="nothing in the trash was at /a/sub2/f.txt") as exc:
        match(ENTRIES, "/a/sub2/f.txt")
    assert "/a/sub0/f.txt" in str(exc.value)
    with pytest.raises(NotFoundError):
        match(ENTRIES, "/never/was.txt")


def test_pick_by_id_path_or_a_unique_name():
    assert pick(ENTRIES, "5")["id"] == 5
    assert pick(ENTRIES, "/a/sub0/f.txt")["id"] == 9
    assert pick(ENTRIES, "g.txt")["id"] == 3
    with pytest.raises(ClientError, match="give one's id"):
        pick(ENTRIES, "/a/sub1/f.txt")
    with pytest.raises(NotFoundError):
        pick(ENTRIES, "42")
