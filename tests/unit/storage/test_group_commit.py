"""Group commit (storage/groupcommit.py): concurrent commits share a transaction, each in a
savepoint, and each caller gets its own result or error once the group has committed."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from storage import crashpoints
from storage.db import make_engine, make_sessionmaker
from storage.errors import PreconditionFailed
from storage.groupcommit import GroupCommitter
from storage.models import User
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

    with Held() as held:
        first = threading.Thread(target=put, args=("first.bin", rand(2000, 99)))
        first.start()
        assert held.reached.wait(30)
        threads = [threading.Thread(target=put, args=(n, d)) for n, d in files.items()]
        # both pass the check before the commit (no same.bin yet); in the group, one creates it
        threads += [threading.Thread(target=put, args=("same.bin", rand(1500, 50 + k)),
                                     kwargs={"if_none_match": True, "tag": str(k)}) for k in range(2)]
        for t in threads:
            t.start()
        wait_until(lambda: drive.commits.waiting == len(threads), 20, "the puts to queue", 0.01)
        held.release.set()
        for t in [first, *threads]:
            t.join(30)

    assert drive.commits.stats["largest"] == len(threads)
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
    with Held() as held:
        lead = threading.Thread(target=run, args=("lead", insert("lead")))
        lead.start()
        assert held.reached.wait(30)
        threads = [threading.Thread(target=run, args=item) for item in fns.items()]
        for t in threads:
            t.start()
        wait_until(lambda: committer.waiting == len(threads), 20, "the functions to queue", 0.01)
        held.release.set()
        for t in [lead, *threads]:
            t.join(30)
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
