"""storage/search.py: search by name over what a user may see, kept in step with the tree by
the index triggers, on SQLite and MariaDB (the ``drive`` fixture)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.errors import InvalidInput
from storage.search import MAX_QUERY, Search, decode_cursor, encode_cursor, query_words
from storage.sharing import Sharing
from tests.conftest import make_config, put_bytes
from tests.unit.storage.test_tree_paths import empty_db  # noqa: F401  (fixture)


@pytest.fixture
def search(drive):
    return Search(drive)


@pytest.fixture
def ann_tree(drive, make_user):
    """ann: /Docs/2024/report-2024_final.pdf, /Docs/notes.txt, /Shared/plan.md (shared with
    bob), and another user carol with her own report."""
    ann, bob, carol = make_user(), make_user(), make_user()
    docs = drive.mkdir(ann.id, ann.root_id, "Docs")
    year = drive.mkdir(ann.id, docs.id, "2024")
    report = put_bytes(drive, ann, "report-2024_final.pdf", b"r", parent=year.id).node
    notes = put_bytes(drive, ann, "notes.txt", b"n", parent=docs.id).node
    shared = drive.mkdir(ann.id, ann.root_id, "Shared")
    plan = put_bytes(drive, ann, "plan.md", b"p", parent=shared.id).node
    Sharing(drive).grant(ann.id, shared.id, bob.email, "editor")
    theirs = put_bytes(drive, carol, "report.pdf", b"c").node
    return dict(ann=ann, bob=bob, carol=carol, docs=docs, year=year, report=report, notes=notes,
                shared=shared, plan=plan, theirs=theirs)


def ids(hits):
    return [h.node.id for h in hits]


def found(search, user, q):
    return ids(search.find(user.id, q)[0])


@pytest.mark.parametrize("q", ["report", "2024", "final", "pdf", "repo", "REPORT", "fin rep", "report-2024",
                               "report_2024_final.pdf"])
def test_every_word_of_a_name_finds_it_and_a_word_start_too(search, ann_tree, q):
    t = ann_tree
    assert t["report"].id in found(search, t["ann"], q)


def test_own_files_are_found_and_other_users_files_are_not(search, ann_tree):
    t = ann_tree
    assert found(search, t["ann"], "report") == [t["report"].id]
    assert found(search, t["carol"], "report") == [t["theirs"].id]
    assert found(search, t["bob"], "report") == []
    assert found(search, t["ann"], "nothing") == []


def test_a_hit_carries_its_folders_size_kind_and_role(search, ann_tree):
    t = ann_tree
    [hit] = search.find(t["ann"].id, "final")[0]
    assert hit.node.kind == "file" and hit.node.size == 1 and hit.node.role == "owner"
    assert hit.node.parent_id == t["year"].id
    assert [i for i, _ in hit.folders] == [t["ann"].root_id, t["docs"].id, t["year"].id]
    assert hit.path == "/Docs/2024" and not hit.shared
    [folder] = search.find(t["ann"].id, "docs")[0]
    assert folder.node.kind == "folder" and folder.path == "/"


def test_what_is_shared_is_found_from_the_shared_folder_down(drive, search, ann_tree):
    t = ann_tree
    hits = {h.node.id: h for h in search.find(t["bob"].id, "plan")[0]}
    assert list(hits) == [t["plan"].id]
    hit = hits[t["plan"].id]
    assert hit.shared and hit.node.role == "editor" and hit.path == "Shared"
    # the shared folder itself is found too; ann's folders above it are not shown to bob
    [top] = search.find(t["bob"].id, "shared")[0]
    assert top.node.id == t["shared"].id and top.folders == []
    # a file added later below the share is found, one beside it is not
    sub = drive.mkdir(t["ann"].id, t["shared"].id, "sub")
    later = put_bytes(drive, t["ann"], "plan-b.md", b"x", parent=sub.id).node
    put_bytes(drive, t["ann"], "plan-c.md", b"x")
    assert set(found(search, t["bob"], "plan")) == {t["plan"].id, later.id}


def test_trashed_nodes_are_not_found_and_come_back_on_restore(drive, search, ann_tree):
    t = ann_tree
    drive.delete(t["ann"].id, t["docs"].id)
    assert found(search, t["ann"], "report") == [] and found(search, t["ann"], "notes") == []
    drive.restore(t["ann"].id, t["docs"].id)
    assert found(search, t["ann"], "report") == [t["report"].id]
    drive.delete(t["ann"].id, t["report"].id)
    drive.purge(t["ann"].id, t["report"].id)
    assert found(search, t["ann"], "report") == []


def test_a_renamed_node_is_found_by_its_new_name_only(drive, search, ann_tree):
    t = ann_tree
    drive.move(t["ann"].id, t["notes"].id, name="minutes.txt")
    assert found(search, t["ann"], "minutes") == [t["notes"].id]
    assert found(search, t["ann"], "notes") == []


def test_a_move_out_of_a_share_hides_it_from_the_grantee(drive, search, ann_tree):
    t = ann_tree
    assert found(search, t["bob"], "plan") == [t["plan"].id]
    drive.move(t["ann"].id, t["plan"].id, parent_id=t["docs"].id)
    assert found(search, t["bob"], "plan") == []
    assert found(search, t["ann"], "plan") == [t["plan"].id]
    copy = drive.copy(t["ann"].id, t["docs"].id, t["shared"].id)
    assert found(search, t["bob"], "final") == [drive.lookup(t["ann"].id, copy.id, ["2024", "report-2024_final.pdf"]).id]


def test_a_better_match_ranks_first_and_pages_follow_each_other(drive, search, make_user):
    u = make_user()
    for i in range(7):
        put_bytes(drive, u, f"budget {i} with many other words in its name.txt", b"x")
    exact = put_bytes(drive, u, "budget.txt", b"x").node
    page1, cur = search.find(u.id, "budget", limit=3)
    assert page1[0].node.id == exact.id and cur
    page2, cur2 = search.find(u.id, "budget", limit=3, cursor=cur)
    page3, cur3 = search.find(u.id, "budget", limit=3, cursor=cur2)
    seen = ids(page1) + ids(page2) + ids(page3)
    assert len(seen) == len(set(seen)) == 8 and cur3 is None


@pytest.mark.parametrize("q", ['"', '"report', "report*", "-report", "report -pdf", "NEAR(report pdf)", "(report",
                               "report)", "a OR b", "NOT report", "^report", "report:pdf", "name : report",
                               "anc : 1", "{name}: x", "'; DROP TABLE nodes; --", "+report +", "@@", "report\\",
                               "\u202ereport", "rep\x00ort", "AND", "*", "日本"])
def test_hostile_queries_are_answered_or_refused_never_fail(search, ann_tree, q):
    t = ann_tree
    try:
        hits = search.find(t["ann"].id, q)[0]
    except InvalidInput:
        return
    assert t["theirs"].id not in ids(hits)


def test_an_index_word_cannot_widen_the_scope(search, ann_tree):
    """The ancestor ids in the index are not name words: searching another user's root id
    finds nothing of theirs."""
    t = ann_tree
    assert t["theirs"].id not in found(search, t["bob"], str(t["carol"].root_id))


@pytest.mark.parametrize("q, message", [("", "empty"), ("   ", "empty"), ("x" * (MAX_QUERY + 1), "at most"),
                                        ("***", "letter or a digit"), ("a b c d e f g h i", "words")])
def test_bad_queries_are_refused_clearly(q, message):
    with pytest.raises(InvalidInput, match=message):
        query_words(q)


def test_limits_and_cursors_are_checked(search, ann_tree):
    t = ann_tree
    for limit in (0, 101):
        with pytest.raises(InvalidInput, match="limit"):
            search.find(t["ann"].id, "report", limit=limit)
    for cursor in ("x", encode_cursor(-1), "W10", "bm90IGpzb24"):
        with pytest.raises(InvalidInput, match="cursor"):
            search.find(t["ann"].id, "report", cursor=cursor)
    assert decode_cursor(encode_cursor(40)) == 40


def test_case_and_accents_do_not_matter(drive, search, make_user):
    u = make_user()
    cv = put_bytes(drive, u, "Résumé Ünïcode.pdf", b"x").node
    for q in ("resume", "RÉSUMÉ", "unicode", "résu"):
        assert found(search, u, q) == [cv.id], q


def test_the_migration_indexes_what_is_there_and_goes_back_cleanly(empty_db, tmp_path):  # noqa: F811
    from alembic import command

    from storage.db import _alembic_config, migrate
    from storage.drive import Drive

    def to(rev, how=command.upgrade):
        with empty_db.begin() as conn:
            cfg = _alembic_config(empty_db)
            cfg.attributes["connection"] = conn
            how(cfg, rev)
    to("0010")
    with empty_db.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email, password_hash, plan, quota_bytes, used_bytes, is_admin, "
                             "root_id, created_at) VALUES (1, 'u1@x', 'x', 'free', 1, 0, 0, 100, '2026-01-01')"))
        for nid, parent, name, live, path in [(100, None, "", None, "/"), (101, 100, "old report.txt", "old report.txt",
                                                                          "/100/"),
                                              (102, 100, "trashed report.txt", None, "/100/")]:
            conn.execute(sa.text("INSERT INTO nodes (id, owner_id, parent_id, kind, name, live_name, path, created_at, "
                                 "updated_at) VALUES (:id, 1, :parent, 'file', :name, :live, :path, '2026-01-01', "
                                 "'2026-01-01')"), dict(id=nid, parent=parent, name=name, live=live, path=path))
    migrate(empty_db)
    d = Drive(make_config(tmp_path), engine=empty_db)
    assert [h.node.id for h in Search(d).find(1, "report")[0]] == [101]
    to("0010", command.downgrade)
    with empty_db.begin() as conn:  # no trigger is left behind to write into a missing table
        conn.execute(sa.text("UPDATE nodes SET live_name = 'renamed.txt', name = 'renamed.txt' WHERE id = 101"))
        assert not {"node_fts", "node_words"} & set(sa.inspect(conn).get_table_names())
    to("head")
    assert [h.node.id for h in Search(d).find(1, "renamed")[0]] == [101]
    d.close()


def test_whole_words_rank_before_word_starts(drive, search, make_user):
    u = make_user()
    exact = put_bytes(drive, u, "plan.md", b"x").node
    starts = put_bytes(drive, u, "plans.md", b"x").node  # only starts with the word
    both = put_bytes(drive, u, "plan for the plan b.md", b"x").node
    assert found(search, u, "plan") == [exact.id, both.id, starts.id]
    assert found(search, u, "plan b") == [both.id]


def test_without_the_index_narrowing_the_rule_alone_still_holds(search, ann_tree, monkeypatch):
    """Past MAX_SCOPES shares the query leaves the subtrees out of the index clause; what is
    returned is then decided by the visibility filter alone, and is the same."""
    import storage.search
    t = ann_tree
    monkeypatch.setattr(storage.search, "MAX_SCOPES", 0)
    assert found(search, t["ann"], "report") == [t["report"].id]
    assert found(search, t["bob"], "report") == []
    assert found(search, t["bob"], "plan") == [t["plan"].id]
