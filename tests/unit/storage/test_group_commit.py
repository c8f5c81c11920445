"""Group commit (storage/groupcommit.py): concurrent commits share a transaction, each in a
savepoint, and each caller gets its own result or error once the group has committed."""

from __future__ import annotations

import functools
import threading

import pytest
import sqlalchemy as sa

from storage import crashpoints
from storage.db import make_engine, make_sessionmaker
from storage.errors import PreconditionFailed
from storage import traffic
from storage.groupcommit import Batch, GroupCommitter
from storage.models import Block, User
from storage.sharing import Sharing
from rehearsal.procs import wait_until
from tests.conftest import make_config, put_bytes, rand, read_all


class Held:
    """Holds the first group at ``group:before_commit`` until released, so the commits that
    arrive meanwhile queue and make the next group together."""

    def __init__(self):
        self.reached = threading.Event()
        self.release = threading.Event()
        self.first = True

    def __call__(self):
        if self.first:
            self.first = False
            self.reached.set()
            assert self.release.wait(30)

    def __enter__(self):
        crashpoints.HOOKS["group:before_commit"] = self
        return self

    def __exit__(self, *exc):
        self.release.set()
        crashpoints.HOOKS.pop("group:before_commit", None)


def behind_a_held_leader(committer: GroupCommitter, lead, others: list) -> None:
    """Run ``lead`` and hold its group at ``group:before_commit`` while ``others`` (functions
    of no arguments, each run in a thread of its own) queue behind it; then let all finish, so
    ``others`` make one group."""
    with Held() as held:
        first = threading.Thread(target=lead)
        first.start()
        assert held.reached.wait(30)
        threads = [threading.Thread(target=fn) for fn in others]
        for t in threads:
            t.start()
        wait_until(lambda: committer.waiting == len(threads), 20, "the commits to queue", 0.01)
        held.release.set()
        for t in [first, *threads]:
            t.join(30)


@pytest.fixture
def config(tmp_path):
    """The ``drive`` fixture (either database, fsck after each test) with its puts sharing
    transactions (``storage.group_commit``)."""
    return make_config(tmp_path, group_commit=True)


def test_concurrent_puts_share_a_transaction_and_keep_their_own_errors(drive, make_user):
    user = make_user()
    files = {f"f{i}.bin": rand(3000 + i, i) for i in range(4)}
    results: dict[str, object] = {}

    def put(name, data, **kw):
        try:
            results[name + kw.get("tag", "")] = put_bytes(drive, user, name, data,
                                                          if_none_match=kw.get("if_none_match", False))
        except Exception as exc:  # noqa: BLE001 - kept for the assertions
            results[name + kw.get("tag", "")] = exc

    others = [functools.partial(put, n, d) for n, d in files.items()]
    # both pass the check before the commit (no same.bin yet); in the group, one creates it
    others += [functools.partial(put, "same.bin", rand(1500, 50 + k), if_none_match=True, tag=str(k)) for k in range(2)]
    behind_a_held_leader(drive.commits, functools.partial(put, "first.bin", rand(2000, 99)), others)

    assert drive.commits.stats["largest"] == len(others)
    # one name twice: the group's bulk commit is refused, and each put commits on its own
    assert drive.commits.stats["batched"] == 0 and drive.commits.stats["unbatched"] == len(others)
    for name, data in files.items():
        assert read_all(drive, user, results[name].node.id) == data
    same = [results["same.bin0"], results["same.bin1"]]
    refused = [r for r in same if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], PreconditionFailed), same
    won = next(r for r in same if not isinstance(r, Exception))
    assert drive.resolve(user.id, "/same.bin").version_id == won.version_id
    # the refused put's savepoint took its quota charge and its refs back with it
    with drive.sm() as s:
        used = s.get(User, user.id).used_bytes
    assert used == sum(drive.charge_of(len(d), 1) for d in files.values()) \
        + drive.charge_of(2000, 1) + drive.charge_of(won.node.size, 1)


def test_a_group_of_puts_commits_in_bulk_as_each_would_alone(drive, make_user):
    owner, editor = make_user(), make_user()
    docs = drive.mkdir(owner.id, owner.root_id, "docs")
    Sharing(drive).grant(owner.id, docs.id, editor.email, "editor")
    old = put_bytes(drive, owner, "old.txt", b"first", parent=docs.id)
    puts = {"a.bin": (owner, rand(3000, 1)), "twin.bin": (owner, rand(3000, 1)),  # the same content
            "old.txt": (owner, b"second version"), "E.bin": (editor, rand(2500, 2)),
            "elsewhere.bin": (owner, rand(1000, 3))}
    results: dict = {}

    def put(name, user, data):
        parent = owner.root_id if name == "elsewhere.bin" else docs.id
        results[name] = put_bytes(drive, user, name, data, parent=parent, count_traffic=True,
                                  if_match=old.version_id if name == "old.txt" else None)

    behind_a_held_leader(drive.commits, functools.partial(put_bytes, drive, owner, "first.bin", rand(200, 9)),
                         [functools.partial(put, n, u, d) for n, (u, d) in puts.items()])

    assert drive.commits.stats["batched"] == len(puts) and drive.commits.stats["unbatched"] == 0
    for name, (user, data) in puts.items():
        got = results[name]
        assert read_all(drive, user, got.node.id) == data
        seen = drive.get(user.id, got.node.id)
        assert (got.node.name, got.node.parent_id, got.node.size, got.node.sha256, got.node.version_id, got.node.role) \
            == (seen.name, seen.parent_id, seen.size, seen.sha256, seen.version_id, seen.role) == \
            (name, seen.parent_id, len(data), seen.sha256, got.version_id, "owner" if user is owner else "editor")
        assert got.created == (name != "old.txt")
    assert results["old.txt"].node.id == old.node.id and results["old.txt"].version_id != old.version_id
    with drive.sm() as s:  # both wrote the block they shared; one row stands, with both refs
        assert s.execute(sa.select(Block.refcount).where(Block.id == bytes.fromhex(results["a.bin"].node.sha256))
                         ).scalars().all() == [2]
    # the owner pays for every version in their folders, the editor's included
    with drive.sm() as s:
        used = {u.id: s.get(User, u.id).used_bytes for u in (owner, editor)}
    assert used[owner.id] == sum(drive.charge_of(n, 1) for n in (len(b"first"), 200)) \
        + sum(drive.charge_of(len(d), 1) for _, d in puts.values())
    assert used[editor.id] == 0
    today = traffic.daily(drive.engine)[-1]  # counted for the puts that asked, in their commit
    assert (today["uploads"], today["bytes_in"]) == (len(puts), sum(len(d) for _, d in puts.values()))


def test_an_idle_put_commits_alone(drive, make_user):
    user = make_user()
    res = put_bytes(drive, user, "one.bin", b"hello")
    assert read_all(drive, user, res.node.id) == b"hello"
    assert drive.commits.stats["groups"] == 0 and drive.commits.stats["alone"] == 0


def test_by_default_group_commit_is_on_with_sqlite_and_off_with_mariadb(tmp_path, db_engine):
    from storage.drive import Drive
    auto = Drive(make_config(tmp_path), engine=db_engine)
    assert auto.config["storage"]["group_commit"] == "auto"
    assert (auto.commits is not None) == (db_engine.dialect.name == "sqlite")
    user, _ = auto.create_user("auto@example.com", "password123")
    assert read_all(auto, user, put_bytes(auto, user, "a.bin", b"abc").node.id) == b"abc"
    auto.close()
    for setting in (True, False):  # said outright, it holds on either database
        d = Drive(make_config(tmp_path, group_commit=setting), engine=db_engine)
        assert (d.commits is not None) == setting
        d.close()


# ---- the committer alone, on a table of its own -----------------------------------------------

@pytest.fixture
def kv(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'kv.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)")
    yield make_sessionmaker(engine)
    engine.dispose()


def insert(k, v=1):
    def fn(s):
        s.execute(sa.text("INSERT INTO kv (k, v) VALUES (:k, :v)"), {"k": k, "v": v})
        return k
    return fn


def rows(sm) -> dict:
    with sm() as s:
        return dict(s.execute(sa.text("SELECT k, v FROM kv")).all())


def grouped(committer: GroupCommitter, fns: dict) -> dict:
    """Run ``fns`` (name -> function) as one group behind a held leader, in the order of their
    names (their keys); name -> result or error."""
    out: dict = {}

    def run(name, fn):
        try:
            out[name] = committer.run(fn, key=(name,))
        except Exception as exc:  # noqa: BLE001 - kept for the assertions
            out[name] = exc
    behind_a_held_leader(committer, functools.partial(run, "lead", insert("lead")),
                         [functools.partial(run, *item) for item in fns.items()])
    return out


def test_an_error_rolls_back_its_own_savepoint_only(kv):
    def fails(s):
        insert("c")(s)
        raise ValueError("no")
    calls = {"b": 0}

    def clashes(s):  # loses a race in the group; run alone, it sees the row and moves on
        calls["b"] += 1
        verb = "INSERT" if calls["b"] == 1 else "INSERT OR IGNORE"
        s.execute(sa.text(f"{verb} INTO kv (k, v) VALUES ('a', 2)"))
        return "b"
    c = GroupCommitter(kv)
    out = grouped(c, {"a": insert("a"), "b": clashes, "c": fails})
    assert out["lead"] == "lead" and out["a"] == "a" and out["b"] == "b"
    assert isinstance(out["c"], ValueError)
    assert rows(kv) == {"lead": 1, "a": 1}
    assert calls["b"] == 2 and c.stats["alone"] == 1 and c.stats["largest"] == 3


def test_a_failed_group_runs_every_function_again_alone(kv):
    calls = {"a": 0}

    def counted(s):
        calls["a"] += 1
        return insert("a")(s)

    def broken(s):
        s.execute(sa.text("SELECT * FROM no_such_table"))
    c = GroupCommitter(kv)
    out = grouped(c, {"a": counted, "x": broken})
    assert out["a"] == "a" and isinstance(out["x"], sa.exc.OperationalError)
    assert calls["a"] == 2  # once in the group that did not commit, once alone
    assert rows(kv) == {"lead": 1, "a": 1}
    assert c.stats["alone"] == 2 and c.stats["groups"] == 0


def test_groups_are_capped(kv):
    c = GroupCommitter(kv, max_group=2)
    out = grouped(c, {k: insert(k) for k in "abcd"})
    assert all(out[k] == k for k in "abcd")
    assert c.stats["largest"] == 2
    assert set(rows(kv)) == {"lead", *"abcd"}


def test_functions_of_one_kind_run_in_bulk_or_else_each_on_its_own(kv):
    calls: list = []

    def bulk(s, keys):
        calls.append(list(keys))
        for k in keys:
            insert(k, 2)(s)
        if "bad" in keys:
            raise ValueError("one of them fails")
        return [k.upper() for k in keys]
    c = GroupCommitter(kv)

    def batched(k):
        fn = insert(k, 3) if k != "bad" else (lambda s: (_ for _ in ()).throw(KeyError(k)))
        return fn, Batch(bulk, k)

    out = {}

    def run(name):
        fn, batch = batched(name)
        try:
            out[name] = c.run(fn, key=(name,), batch=batch)
        except Exception as exc:  # noqa: BLE001 - kept for the assertions
            out[name] = exc

    for names, expect in ((["d", "e", "f"], {"d": "D", "e": "E", "f": "F"}),
                          (["bad", "g", "h"], {"g": "g", "h": "h"})):
        behind_a_held_leader(c, functools.partial(c.run, insert("lead" + names[0])),
                             [functools.partial(run, n) for n in names])
        assert calls[-1] == sorted(names)  # in the order of their keys
        assert {n: out[n] for n in expect} == expect
    # the first kind ran in bulk (v=2); the second's bulk run rolled back and each ran alone (v=3)
    assert isinstance(out["bad"], KeyError)
    got = rows(kv)
    assert {k: got[k] for k in "defgh"} == {"d": 2, "e": 2, "f": 2, "g": 3, "h": 3} and "bad" not in got
    assert c.stats["batched"] == 3 and c.stats["unbatched"] == 3


def test_the_setting_is_true_false_or_auto(tmp_path):
    from storage.config import load_config
    from storage.errors import ConfigError
    with pytest.raises(ConfigError, match="group_commit"):
        make_config(tmp_path, group_commit="yes")
    for raw, value in (("auto", "auto"), ("AUTO", "auto"), ("on", True), ("false", False), ("1", True)):
        assert load_config(env={"BLOCKDRIVE_STORAGE_GROUP_COMMIT": raw})["storage"]["group_commit"] == value
    with pytest.raises(ConfigError, match="group_commit: expected true, false or auto, got 'sometimes'"):
        load_config(env={"BLOCKDRIVE_STORAGE_GROUP_COMMIT": "sometimes"})
    toml = tmp_path / "gc.toml"
    for text, value in (('group_commit = "auto"', "auto"), ("group_commit = true", True),
                        ("group_commit = false", False)):
        toml.write_text(f"[storage]\n{text}\n")
        assert load_config(toml, env={})["storage"]["group_commit"] == value
    toml.write_text('[storage]\ngroup_commit = "on"\n')
    with pytest.raises(ConfigError, match='group_commit must be true, false or "auto"'):
        load_config(toml, env={})
