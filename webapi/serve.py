"""Serve the app with gunicorn, configured from blockdrive's config."""

from __future__ import annotations

import functools
import gc
import ipaddress
import os
import shutil
import socket
import tempfile
import time

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

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
        if not (pid.isascii() and pid.isdigit()) or pid_alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        removed.append(name)
    return removed


class DeadlineSocket:
    """A client connection whose reads end at a deadline, so a slow client cannot hold a
    thread for as long as it likes (ten connections sending a byte a second took every
    thread of a 2 x 4 server, and /healthz with them).

    - the request line and headers must arrive within ``header_timeout_seconds`` of their
      first byte; past it the client gets a 408 and the connection is closed;
    - a body gets ``body_timeout_seconds``, plus one second per ``body_min_bytes_per_second``
      bytes received (Apache's mod_reqtimeout model: fast uploads are never cut, a trickle
      is); and no single wait for more body bytes lasts longer than ``body_timeout_seconds``.

    A read past the deadline returns end-of-stream and marks the socket ``timed_out``: the
    parser then drops the connection, and the application's body check
    (:mod:`webapi.edge`) answers 408 with nothing kept. Writes are not bounded here: a slow
    reader of a large download is the send buffer's to pace. Everything else is the socket's."""

    def __init__(self, sock, limits: dict):
        self._sock = sock
        self._header_timeout = float(limits["header_timeout_seconds"])
        self._body_timeout = float(limits["body_timeout_seconds"])
        self._rate = float(limits["body_min_bytes_per_second"])
        self.begin_request()

    def begin_request(self) -> None:
        self._body, self._deadline, self._received, self.timed_out = False, None, 0, False

    def begin_body(self) -> None:
        self._body, self._received = True, 0
        self._deadline = time.monotonic() + self._body_timeout

    def _remaining(self) -> float:
        now = time.monotonic()
        if self._deadline is None:  # the request's first read: its clock starts now
            self._deadline = now + self._header_timeout
        if self._body:  # no single wait longer than body_timeout either
            if self._rate <= 0:
                return self._body_timeout
            return min(self._body_timeout, self._deadline + self._received / self._rate - now)
        return self._deadline - now

    def _bounded(self, read, *args):
        own = self._remaining()
        if own <= 0 or self.timed_out:
            return self._expired()
        prior = self._sock.gettimeout()  # a caller's own bound (gunicorn's body drain) still holds
        self._sock.settimeout(own if prior is None else min(own, prior))
        try:
            data = read(*args)
        except (socket.timeout, TimeoutError):
            if prior is not None and prior < own:
                raise
            return self._expired()
        finally:
            self._sock.settimeout(prior)
        if self._body:
            self._received += data if isinstance(data, int) else len(data)
        return data

    def _expired(self):
        if not self.timed_out and not self._body:
            prior = self._sock.gettimeout()
            try:  # best effort: a client this slow may not read it either
                self._sock.settimeout(1.0)
                self._sock.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                                   b"Content-Length: 0\r\n\r\n")
            except OSError:
                pass
            finally:
                self._sock.settimeout(prior)
        self.timed_out = True
        return b""

    def hand_over(self):
        """Give the connection to whoever answers it later (a long-poll, see
        :mod:`webapi.longpoll`) and return it: from then on this wrapper reads nothing, writes
        nothing and closes nothing, so the thread and gunicorn let go of it at once (the
        request's own response must ask for ``Connection: close``)."""
        sock, self._sock = self._sock, _HandedOver()
        return sock

    def recv(self, n: int, *flags) -> bytes:
        return self._bounded(self._sock.recv, n, *flags)

    def recv_into(self, buf, *args) -> int:
        data = self._bounded(self._sock.recv_into, buf, *args)
        return 0 if data == b"" else data

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _HandedOver:
    """What a :class:`DeadlineSocket` holds once its connection was handed over: a socket
    that has ended, swallows writes and closes nothing."""

    def recv(self, *_args) -> bytes:
        return b""

    def recv_into(self, *_args) -> int:
        return 0

    def send(self, data, *_args) -> int:
        return len(data)

    def sendall(self, *_args) -> None:
        return None

    def gettimeout(self):
        return None

    def fileno(self) -> int:
        return -1

    def _nothing(self, *_args) -> None:
        return None

    settimeout = setblocking = shutdown = close = _nothing


class DeadlineThreadWorker(ThreadWorker):
    """gunicorn's gthread worker with :class:`DeadlineSocket` connections. Threads waiting
    on a socket cost little, so the server runs many of them (``[server] threads``) and the
    deadlines free the ones slow clients hold."""

    def enqueue_req(self, conn):
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock, self._limits())
        return super().enqueue_req(conn)

    def _limits(self) -> dict:
        if not hasattr(self, "_server_cfg"):  # gunicorn's own CLI (-k) has no blockdrive config
            cfg = getattr(self.app, "bd_config", None)
            if cfg is None:
                from storage.config import load_config
                cfg = load_config()
            self._server_cfg = cfg["server"]
        return self._server_cfg

    def handle(self, conn):
        conn.sock.begin_request()  # each request on a kept-alive connection gets its own clock
        return super().handle(conn)


def _body_begins(worker, req) -> None:
    """gunicorn's pre_request hook: the headers are in, so the body's clock starts."""
    sock = getattr(getattr(req, "unreader", None), "sock", None)
    if isinstance(sock, DeadlineSocket):
        sock.begin_body()


def forwarded_allow_ips(trusted_proxies: str) -> str:
    """gunicorn's ``forwarded_allow_ips`` for ``security.trusted_proxies``: the scheme a proxy
    reports (``X-Forwarded-Proto``, which makes the URLs the app writes, such as a tus upload's
    Location) counts from the same proxies whose ``X-Forwarded-For`` the app trusts. Networks
    are normalised (``10.1.2.3/8`` is ``10.0.0.0/8``), as gunicorn wants them strict."""
    parts = (p.strip() for p in trusted_proxies.split(","))
    return ",".join(str(ipaddress.ip_network(p, strict=False)) for p in parts if p)


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
        self.cfg.set("worker_class", "webapi.serve.DeadlineThreadWorker")
        self.cfg.set("threads", self.bd_config["server"]["threads"])
        self.cfg.set("pre_request", _body_begins)
        self.cfg.set("timeout", 300)  # long uploads stream through one request
        self.cfg.set("graceful_timeout", 30)
        self.cfg.set("accesslog", "-")
        self.cfg.set("limit_request_line", 8190)
        self.cfg.set("limit_request_fields", 100)
        self.cfg.set("limit_request_field_size", 8190)
        self.cfg.set("child_exit", _child_exit)
        self.cfg.set("post_worker_init", _worker_ready)
        self.cfg.set("post_request", trim_after_large_body)
        proxies = forwarded_allow_ips(self.bd_config["security"]["trusted_proxies"])
        if proxies:  # else gunicorn's default (FORWARDED_ALLOW_IPS, or the local host), as before
            self.cfg.set("forwarded_allow_ips", proxies)
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
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):  # not glibc: nothing to tune
        libc.mallopt(-8, 2)           # M_ARENA_MAX


@functools.cache
def _libc():
    import ctypes
    import ctypes.util
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``): an upload's
    blocks, freed when it ends, otherwise stay in the worker's resident memory (about 20 MB
    after a 512 MiB upload) until other requests reuse them."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def release_free_memory() -> None:
    """Collect Python's garbage and trim the heap (:func:`trim_heap`). Called in the master
    just before it forks and in each worker once the app is loaded: what start-up allocated
    and dropped then stays out of every worker's resident memory instead of being copied
    into each at the fork."""
    gc.collect()
    trim_heap()


TRIM_AFTER_BODY_BYTES = 8 * 1024 * 1024


def _worker_ready(_worker) -> None:
    """gunicorn's post_worker_init hook: the app is loaded, its start-up garbage can go."""
    release_free_memory()


def trim_after_large_body(_worker, _req, environ, _resp) -> None:
    """gunicorn's post_request hook: after a large (or chunked) request body, trim the heap.
    Smaller requests leave too little behind to be worth the trim's walk over the heap."""
    chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    if chunked or size >= TRIM_AFTER_BODY_BYTES:
        trim_heap()


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
    release_free_memory()
    gc.freeze()  # the workers' collections then leave the master's objects (and their pages) alone
    Server(config, host, port, workers).run()


