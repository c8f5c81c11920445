"""Request bodies read into typed objects (webapi.schemas), range and ETag parsing at the
edge (webapi.download), and the name pattern the document derives from storage.names."""

from __future__ import annotations

import re

import pytest

from storage.errors import InvalidInput, InvalidName
from storage.names import validate_name
from webapi.download import if_range_matches, parse_range
from webapi.schemas import NAME_PATTERN, Copy, LinkRequest, NewFolder, NodePatch, request_schemas, validate


def refused(model, data) -> str:
    with pytest.raises(InvalidInput) as exc:
        validate(model, data)
    return exc.value.message


def test_a_valid_body_becomes_a_typed_object():
    assert validate(Copy, {"parent_id": 7}) == Copy(parent_id=7)
    assert validate(NodePatch, {"name": "a", "parent_id": 2**63 - 1}).parent_id == 2**63 - 1
    assert validate(LinkRequest, {}).role is None


def test_refusals_name_the_first_field_sent_that_is_wrong():
    assert refused(Copy, {"owner": 1, "parent_id": "x"}) == "unknown or read-only field 'owner'"
    assert refused(Copy, {"parent_id": "7"}) == "field 'parent_id' has the wrong type"
    assert refused(Copy, {"parent_id": True}) == "field 'parent_id' has the wrong type"
    assert refused(Copy, {"parent_id": 2**63}) == "field 'parent_id' is out of range"
    assert refused(Copy, {"parent_id": -1}) == "field 'parent_id' is out of range"
    assert refused(Copy, {"name": "a"}) == "field 'parent_id' is required"
    assert refused(NodePatch, {"name": None}) == "field 'name' has the wrong type"
    assert refused(NewFolder, []) == "the body must be a JSON object"


def test_request_schemas_forbid_unknown_fields_and_list_the_required_ones():
    schemas = request_schemas()
    assert schemas["Copy"]["additionalProperties"] is False and schemas["Copy"]["required"] == ["parent_id"]
    assert schemas["NodePatch"]["required"] == []
    assert "null" not in str(schemas["NodePatch"]["properties"])
    assert schemas["BatchCommit"]["properties"]["files"]["items"]["required"] == [
        "parent_id", "name", "blocks", "size", "sha256"]


@pytest.mark.parametrize("name", ["a", "report 2.pdf", "...", "é", "\U0001F600", ".x", ".", "..", "a/b", "a\\b",
                                  " a", "a ", "\u3000a", "a\u200bb", "x\u00ady", "a\x00", "a\u202eb", "a b"])
def test_the_name_pattern_agrees_with_validate_name(name):
    try:
        validate_name(name)
        valid = True
    except InvalidName:
        valid = False
    assert bool(re.search(NAME_PATTERN, name)) == valid


@pytest.mark.parametrize("header,size,expected", [
    (None, 10, None), ("bytes=0-3", 10, (0, 4)), ("bytes=5-", 10, (5, 10)), ("bytes=-3", 10, (7, 10)),
    ("bytes=-30", 10, (0, 10)), ("bytes=8-30", 10, (8, 10)), ("bytes=10-", 10, "unsatisfiable"),
    ("bytes=-0", 10, "unsatisfiable"), ("bytes=-1", 0, "unsatisfiable"), ("bytes=0-1,3-4", 10, None),
    ("bytes=4-2", 10, None), ("items=0-1", 10, None), ("bytes=\u00b2-", 10, None),
    ("bytes=" + "9" * 5000 + "-", 10, "unsatisfiable"), ("bytes=0-" + "9" * 5000, 10, (0, 10)),
    ("bytes=-" + "9" * 5000, 10, (0, 10)),
])
def test_ranges(header, size, expected):
    assert parse_range(header, size) == expected


def test_if_range_needs_the_strong_etag_of_this_content():
    assert if_range_matches(None, "ab") and if_range_matches('"ab"', "ab")
    assert not if_range_matches('W/"ab"', "ab") and not if_range_matches('"stale"', "ab")
    assert not if_range_matches("Sun, 06 Dec 2026 03:00:00 GMT", "ab")


def test_a_batch_entry_becomes_a_typed_entry_or_its_first_fault():
    from storage import batch
    from webapi.batch import file_entry, folder_entry
    sha = "ab" * 32
    good = {"parent_id": 3, "name": "a.txt", "blocks": [sha], "size": 5, "sha256": sha, "if_match": '"x"'}
    assert file_entry(good) == batch.FileEntry(3, "a.txt", [bytes.fromhex(sha)], 5, bytes.fromhex(sha), "x", False)
    with pytest.raises(InvalidInput, match="unknown field 'zz'"):
        file_entry({**good, "zz": 1, "size": -1})
    with pytest.raises(InvalidInput, match="parent_id must be a node id"):
        file_entry({**good, "parent_id": True, "name": ".."})
    with pytest.raises(InvalidName):
        file_entry({**good, "name": "..", "size": -1})
    with pytest.raises(InvalidInput, match="size must be"):
        file_entry({**good, "size": 2**63})
    assert folder_entry({"parent_id": 3, "name": 7}) == batch.FolderEntry(3, "")
    with pytest.raises(InvalidInput, match="each folder is"):
        folder_entry({"parent_id": 3, "name": "a", "kind": "folder"})
