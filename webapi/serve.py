"""Serve the app with gunicorn, configured from blockdrive's config."""

from __future__ import annotations

import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication

from storage.procs import pid_alive


def _child_exit(_server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)


METRICS_PREFIX = "blockdrive-metrics-"


def sweep_metrics_dirs(tmp: str | None = None) -> list[str]:
    """Remove the metrics directories of servers that are gone. A server stopped cleanly
    removes its own; one that was killed (SIGKILL, OOM, power) cannot, so the next start does.
    A directory's name carries its server's pid: while that pid lives, it is left alone."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    for name in os.listdir(tmp):
        if not name.startswith(METRICS_PREFIX):
            continue
        pid = name[len(METRICS_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        removed.append(name)
    return removed


class Server(BaseApplication):
    def __init__(self, config, host: str, port: int, workers: int):
        self.bd_config, self.bind, self.workers = config, f"{host}:{port}", workers
        # Metrics from every worker meet in one directory (see webapi.metrics); a fresh one
        # per server, so a restart does not add up the previous run's counters.
        self.metrics_dir = None
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            sweep_metrics_dirs()
            self.metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        super().__init__()

    def load_config(self):
        self.cfg.set("bind", self.bind)
        self.cfg.set("workers", self.workers)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", 4)
        self.cfg.set("timeout", 300)  # long uploads stream through one request
        self.cfg.set("graceful_timeout", 30)
        self.cfg.set("accesslog", "-")
        self.cfg.set("limit_request_line", 8190)
        self.cfg.set("limit_request_fields", 100)
        self.cfg.set("limit_request_field_size", 8190)
        self.cfg.set("child_exit", _child_exit)
        if self.metrics_dir:  # the master's exit only (workers exit through sys.exit too)
            self.cfg.set("on_exit", lambda _arbiter: shutil.rmtree(self.metrics_dir, ignore_errors=True))

    def load(self):
        from . import create_app
        return create_app(self.bd_config)


def _tame_malloc() -> None:
    """glibc gives threads arenas of their own and keeps what is freed in each: with ~1 MiB
    blocks passing through several threads per worker, that holds hundreds of MB for nothing.
    Two arenas keep a worker's memory close to what it uses. Set before forking, so every
    worker inherits it."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, 2)           # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _honour_connection_close() -> None:
    """gunicorn drops the hop-by-hop headers an app sets, ``Connection: close`` among them, and
    keeps the connection alive. The app asks for a close when it answered an error before
    reading the whole request body (a refused upload): the connection must not carry on with
    the leftover bytes, and the client must be told, or it reuses a socket the server is about
    to drop. Here the app's ``Connection: close`` makes gunicorn close and say so."""
    from gunicorn.http import wsgi
    if getattr(wsgi.Response.process_headers, "_blockdrive", False):
        return
    original = wsgi.Response.process_headers

    def process_headers(self, headers):
        if any(n.lower() == "connection" and v.strip().lower() == "close" for n, v in headers):
            self.force_close()
        return original(self, headers)
    process_headers._blockdrive = True
    wsgi.Response.process_headers = process_headers


def serve(config, host: str, port: int, workers: int) -> None:
    _tame_malloc()
    _honour_connection_close()
    Server(config, host, port, workers).run()
