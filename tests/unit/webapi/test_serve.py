"""The server's housekeeping outside the app: metrics directories left by killed servers, the
heap handed back to the system after large requests."""

from __future__ import annotations

import os
import subprocess
import sys

from webapi.serve import METRICS_PREFIX, sweep_metrics_dirs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_the_dirs_of_dead_servers(tmp_path):
    dead = tmp_path / f"{METRICS_PREFIX}{_dead_pid()}-abc"
    mine = tmp_path / f"{METRICS_PREFIX}{os.getpid()}-def"
    unrelated = tmp_path / "something-else-1"
    unnumbered = tmp_path / f"{METRICS_PREFIX}x1y2"
    for d in (dead, mine, unrelated, unnumbered):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"\0" * 16)

    removed = sweep_metrics_dirs(str(tmp_path))

    assert removed == [dead.name]
    assert not dead.exists()
    assert mine.exists() and unrelated.exists() and unnumbered.exists()


def test_sweep_keeps_a_dir_whose_pid_belongs_to_another_user(tmp_path, monkeypatch):
    import webapi.serve as serve

    def refuse(pid, sig):
        raise PermissionError
    d = tmp_path / f"{METRICS_PREFIX}{_dead_pid()}-abc"
    monkeypatch.setattr(serve.os, "kill", refuse)
    d.mkdir()
    assert sweep_metrics_dirs(str(tmp_path)) == []
    assert d.exists()


def test_the_heap_is_trimmed_after_large_or_chunked_bodies_only(monkeypatch):
    import webapi.serve as serve

    trims = []
    monkeypatch.setattr(serve, "trim_heap", lambda: trims.append(True))
    big = str(serve.TRIM_AFTER_BODY_BYTES)
    for environ, trimmed in (({}, False), ({"CONTENT_LENGTH": "4096"}, False), ({"CONTENT_LENGTH": "x"}, False),
                             ({"CONTENT_LENGTH": big}, True), ({"HTTP_TRANSFER_ENCODING": "Chunked"}, True)):
        trims.clear()
        serve.trim_after_large_body(None, None, environ, None)
        assert trims == ([True] if trimmed else []), environ

