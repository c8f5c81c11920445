"""The benchmark suite's own logic: seeded data sets are reproducible and the versioned corpus
reports exactly what changed; ratios against goals are judged the right way round."""

from __future__ import annotations

import base64
import hashlib

import pytest

from bench import datasets
from bench import wsgidav_fs
from bench.dav import groups
from bench.suite import Results


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_data_sets_are_reproducible_from_their_seed(tmp_path):
    a = datasets.random_file(tmp_path / "a", 100_000, seed=5)
    b = datasets.random_file(tmp_path / "b", 100_000, seed=5)
    c = datasets.random_file(tmp_path / "c", 100_000, seed=6)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    n1 = datasets.small_files(tmp_path / "s1", 50, seed=3)
    n2 = datasets.small_files(tmp_path / "s2", 50, seed=3)
    assert n1 == n2 == datasets.tree_bytes(tmp_path / "s1")
    assert _digest(tmp_path / "s1") == _digest(tmp_path / "s2")
    assert all(1024 <= p.stat().st_size <= 64 * 1024 for p in (tmp_path / "s1").rglob("*.bin"))
    n3 = datasets.foldered_files(tmp_path / "f", 25, seed=3, per_folder=10, sizes=(5, 9))
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["d000", "d001", "d002"]
    assert len(list((tmp_path / "f" / "d001").iterdir())) == 10
    assert n3 == datasets.tree_bytes(tmp_path / "f")
    assert all(5 <= p.stat().st_size <= 9 for p in (tmp_path / "f").rglob("*.bin"))


def test_versioned_corpus_reports_what_changed(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    seen = _digest(work)
    for v, changed, deleted in datasets.versioned_corpus(work, 6, 60, 600_000, seed=9):
        now = _digest(work)
        assert set(changed) == {k for k in now if seen.get(k) != now[k]}, v
        assert set(deleted) == set(seen) - set(now), v
        if v:
            assert changed and len(changed) < len(now) // 2  # small edits of some files
        seen = now
    again = tmp_path / "again"
    again.mkdir()
    for _ in datasets.versioned_corpus(again, 6, 60, 600_000, seed=9):
        pass
    assert _digest(again) == seen


def test_edited_pair_differs_in_a_few_places(tmp_path):
    a, b = datasets.edited_pair(tmp_path / "a", tmp_path / "b", 1 << 20, seed=2, edits=4)
    da, db = a.read_bytes(), b.read_bytes()
    assert da != db and len(db) >= len(da)
    assert da[:1000] == db[:1000] or da[-1000:] == db[-1000:]


def test_rclone_processes_share_the_tree_without_overlap(tmp_path):
    datasets.small_files(tmp_path / "t", 300, seed=1, folders=10)
    (tmp_path / "t" / "loose.bin").write_bytes(b"x")  # a file at the top is no folder to share
    parts = groups(tmp_path / "t", 4)
    assert [len(p) for p in parts] == [3, 3, 2, 2]
    assert sorted(top for p in parts for top in p) == [f"d{i:03d}" for i in range(10)]
    assert groups(tmp_path / "t", 16) == [[f"d{i:03d}"] for i in range(10)]


def test_the_wsgidav_peer_serves_its_folder_to_its_one_user_only(tmp_path):
    from werkzeug.test import Client
    client = Client(wsgidav_fs.app(str(tmp_path), "me@example.com", "secret"))
    auth = {"Authorization": "Basic " + base64.b64encode(b"me@example.com:secret").decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"me@example.com:nope").decode()}
    assert client.put("/dav/a.bin", data=b"x" * 1000, headers=wrong).status_code == 401
    assert client.put("/dav/a.bin", data=b"x" * 1000).status_code == 401
    assert client.put("/dav/a.bin", data=b"x" * 1000, headers=auth).status_code == 201
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 1000
    r = client.open("/dav/", method="PROPFIND", headers={**auth, "Depth": "1"})
    assert r.status_code == 207 and b"a.bin" in r.data


def test_results_judge_goals_in_the_right_direction():
    r = Results()
    r.add("fast", "s", "fast thing", [10, 12, 11], "MB/s")
    r.add("slow", "s", "slow thing", [5, 5, 6], "MB/s")
    r.ratio("fast", "slow", 1.0)
    r.ratio("slow", "fast", 1.0)
    assert r.by_key["fast"]["median"] == 11
    assert r.by_key["fast"]["ratios"][0]["met"] is True
    assert r.by_key["slow"]["ratios"][0]["met"] is False
    r.add("big", "s", "stored", [120], "MiB", higher_is_better=False)
    r.add("small", "s", "stored", [100], "MiB", higher_is_better=False)
    r.ratio("big", "small", 1.0)
    r.ratio("small", "big", 1.0)
    assert [r.by_key[k]["ratios"][0]["met"] for k in ("big", "small")] == [False, True]
    text = "\n".join(r.lines())
    assert "MISSED by 20%" in text and "MISSED by 55%" in text


def test_results_hold_a_measure_to_an_absolute_limit():
    r = Results()
    r.add("noop", "s", "no-op", [2.0, 4.0, 5.0], "s", higher_is_better=False)
    r.add("rate", "s", "rate", [90.0], "f/s")
    r.within("noop", 3.0)
    r.within("rate", 100.0)
    assert r.by_key["noop"]["ratios"][0]["met"] is False  # median 4 s is over 3 s
    assert r.by_key["rate"]["ratios"][0]["met"] is False  # 90 f/s is under 100
    r.within("noop", 5.0)
    assert r.by_key["noop"]["ratios"][1]["met"] is True
    assert "of 3 s (goal <= 1: MISSED by 33%)" in "\n".join(r.lines())


def test_the_bisync_bench_reads_the_summary_the_command_prints_and_its_percentiles():
    from bench.bisync import SUMMARY, percentile
    from client.bisync.apply import Report
    report = Report(up=["a"], down=["b", "c"], moved=[("local", "d", "e")], deleted=[], conflicts=[("f", "g")])
    assert SUMMARY.search("up a\n" + report.summary() + "\n").groups() == ("1", "2", "1", "0", "1")
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 0.5) == 51.0 and percentile(xs, 0.99) == 100.0 and percentile([3.0], 0.99) == 3.0


def test_the_small_files_bench_writes_distinct_blobs_and_times_what_it_wraps(tmp_path):
    import os

    from bench.smallfiles import FILE_SIZE, Timings, fsync_loop, small_payloads
    from storage.sharedpack import SharedPacks
    blobs = small_payloads(20, seed=4)
    assert blobs == small_payloads(20, seed=4) != small_payloads(20, seed=5)
    assert len(set(blobs)) == 20 and {len(b) for b in blobs} == {FILE_SIZE}
    fsync, append = os.fsync, SharedPacks.append
    with Timings() as tm:
        times = fsync_loop(tmp_path / "f", blobs[:3])
    assert len(times) == 3 and len(tm.fsyncs) == 3 and tm.appends == []
    assert [p.read_bytes() for p in sorted((tmp_path / "f").iterdir())] == blobs[:3]
    assert (os.fsync, SharedPacks.append) == (fsync, append)  # put back after the run


def test_the_turns_bench_reads_each_setting_as_the_servers_environment():
    from bench.put_turns import parse_setting
    assert parse_setting("default") == parse_setting("") == {}
    assert parse_setting("BLOCKDRIVE_STORAGE_GROUP_COMMIT=on") == {"BLOCKDRIVE_STORAGE_GROUP_COMMIT": "on"}
    assert parse_setting("A=1, B=x=y") == {"A": "1", "B": "x=y"}
    with pytest.raises(SystemExit, match="not NAME=VALUE"):
        parse_setting("A=1,oops")
