"""The server's housekeeping outside the app: metrics directories left by killed servers, the
heap handed back to the system after large requests; which proxies gunicorn believes."""

from __future__ import annotations

import os
import subprocess
import sys

from storage.config import load_config
from webapi.serve import METRICS_PREFIX, Server, forwarded_allow_ips, sweep_metrics_dirs


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



def test_gunicorn_trusts_the_scheme_from_the_trusted_proxies_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # no metrics directory made
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert forwarded_allow_ips(" 10.1.2.3/8, 127.0.0.1 ,") == "10.0.0.0/8,127.0.0.1/32"
    cfg = load_config(env={"BLOCKDRIVE_HOME": str(tmp_path),
                           "BLOCKDRIVE_SECURITY_TRUSTED_PROXIES": "172.16.0.0/12, 10.1.2.3/8"})
    assert Server(cfg, "127.0.0.1", 0, 1).cfg.forwarded_allow_ips == ["172.16.0.0/12", "10.0.0.0/8"]
    # none configured: gunicorn's own default, as before
    plain = load_config(env={"BLOCKDRIVE_HOME": str(tmp_path)})
    assert Server(plain, "127.0.0.1", 0, 1).cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]
