"""The API tier of the rehearsal: several ``blockdrive serve`` processes behind HAProxy, with the
load balancer's configuration shipped in ``docker/haproxy.cfg``, and its failover drill.

:class:`ApiCluster` runs ``blockdrive init`` once, then N servers on their own ports, each with
a home folder of its own (so nothing can rely on another's local disk) and the same secret key,
database and pack storage, and HAProxy in front. Servers are numbered from 1, as ``api-1`` ..
``api-3`` in the HAProxy configuration.

:func:`api_failover` is the drill: work that crosses servers (:func:`cross_server_checks`), then
a steady client load (:mod:`rehearsal.load`) while server 1 is killed with SIGKILL and
restarted, then throughput with 1, 2 and 3 servers (:func:`throughput`), and finally every
acknowledged upload read back and ``blockdrive fsck --deep``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from harness.server import BIN, Server
from .load import SMALL_PUTS, Load, LoadUser, verify
from .procs import Proc, free_port, wait_http, wait_port, wait_until

__all__ = ["HAPROXY_CFG", "SLOTS", "haproxy_binary", "ApiCluster", "cross_server_checks", "throughput",
           "api_failover"]

HAPROXY_CFG = Path(__file__).resolve().parents[1] / "docker" / "haproxy.cfg"
SLOTS = 3  # server lines (api-1 .. api-3) in docker/haproxy.cfg
BACKEND = "blockdrive_api"
TUS = {"Tus-Resumable": "1.0.0"}


def haproxy_binary() -> str | None:
    """Where HAProxy is installed (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


class ApiCluster:
    """``servers`` (1 to :data:`SLOTS`) API servers with ``workers`` worker processes each, on
    ``database_url`` and ``storage_url``, behind HAProxy; logs and homes under ``folder``.
    ``extra_env`` adds configuration (``BLOCKDRIVE_*``) for every server. Use as a context
    manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, folder: Path, database_url: str, storage_url: str, servers: int = 3, workers: int = 2,
                 extra_env: dict | None = None):
        if not 1 <= servers <= SLOTS:
            raise ValueError(f"docker/haproxy.cfg has {SLOTS} server slots; asked for {servers}")
        self.folder = Path(folder)
        self.count, self.workers = servers, workers
        self.ports = [free_port() for _ in range(servers)]
        self.lb_port, self.stats_port = free_port(), free_port()
        self.env = {**os.environ, "BLOCKDRIVE_HOME": str(self.folder / "home"),
                    "BLOCKDRIVE_DATABASE_URL": database_url, "BLOCKDRIVE_STORAGE_URL": storage_url,
                    "BLOCKDRIVE_SERVER_SECRET_KEY": secrets.token_hex(32),
                    # X-Forwarded-For from the balancer names the client (sign-in throttling)
                    "BLOCKDRIVE_SECURITY_TRUSTED_PROXIES": "127.0.0.1/32",
                    "BLOCKDRIVE_SECURITY_SCRYPT_N": "1024",
                    "BLOCKDRIVE_STORAGE_CHUNK_MIN": str(64 * 1024),
                    "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(256 * 1024),
                    "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(1024 * 1024), **(extra_env or {})}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server makes its own
        self.servers = [self._server_proc(n) for n in range(1, servers + 1)]
        self.haproxy: Proc | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The balancer's URL: what clients use."""
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/stats"

    def server_url(self, n: int) -> str:
        """Server ``n``'s own URL (bypassing the balancer)."""
        return f"http://127.0.0.1:{self.ports[n - 1]}"

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> ApiCluster:
        """Initialise the database and storage, start every server and HAProxy, and wait
        until HAProxy sees every server UP."""
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("HAProxy is not installed (Debian: apt-get install haproxy)")
        self.cli("init")
        try:
            for proc in self.servers:  # all at once: they start in parallel
                proc.start()
            for n in range(1, self.count + 1):
                self._wait_ready(n, timeout=120)
            # Unused slots point at a port nothing listens on: HAProxy keeps them DOWN.
            slots = {f"BLOCKDRIVE_API_{n}": f"127.0.0.1:{self.ports[n - 1] if n <= self.count else free_port()}"
                     for n in range(1, SLOTS + 1)}
            env = {**os.environ, "HAPROXY_BIND": f"127.0.0.1:{self.lb_port}",
                   "HAPROXY_STATS_BIND": f"127.0.0.1:{self.stats_port}", **slots}
            check = subprocess.run([binary, "-c", "-q", "-f", str(HAPROXY_CFG)], env=env, capture_output=True,
                                   text=True)
            if check.returncode != 0:
                raise RuntimeError(f"docker/haproxy.cfg does not validate:\n{check.stdout}{check.stderr}")
            self.haproxy = Proc("haproxy", [binary, "-db", "-f", str(HAPROXY_CFG)], self.folder / "haproxy.log",
                                env=env).start()
            try:
                wait_port(self.stats_port, timeout=30, what="HAProxy's stats page")
            except TimeoutError:
                raise RuntimeError(f"HAProxy did not start:\n{self.haproxy.tail()}") from None
            for n in range(1, self.count + 1):
                self.wait_state(n, "UP", timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop HAProxy and every server (SIGTERM, then SIGKILL for what lingers)."""
        if self.haproxy is not None:
            self.haproxy.stop(10)
        for proc in self.servers:
            proc.stop(30)

    def __enter__(self) -> ApiCluster:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def kill(self, n: int) -> None:
        """SIGKILL server ``n`` (its gunicorn master and workers), as a crash would."""
        self.servers[n - 1].kill()

    def stop_server(self, n: int) -> None:
        """Stop server ``n`` politely (gunicorn finishes its requests)."""
        self.servers[n - 1].stop(30)

    def restart(self, n: int, timeout: float = 90) -> float:
        """Start server ``n`` again on its port (after :meth:`kill` or :meth:`stop_server`),
        or for the first time; the seconds until its own /readyz answered 200."""
        proc = self.servers[n - 1]
        if proc.alive():
            proc.stop(30)
        proc.start()
        return self._wait_ready(n, timeout)

    def _wait_ready(self, n: int, timeout: float) -> float:
        try:
            return wait_http(self.server_url(n) + "/readyz", timeout=timeout)
        except TimeoutError:
            raise RuntimeError(f"api-{n} did not become ready:\n{self.servers[n - 1].tail()}") from None

    # -- the balancer's view ---------------------------------------------------------------
    def states(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it, by name (``api-1``: ``UP``, ``DOWN``, ``MAINT``;
        a server on its way down is still ``UP``, one on its way up still ``DOWN``)."""
        return {row["svname"]: row["status"].split()[0] for row in self._stats_rows()}

    def served(self) -> dict[str, int]:
        """How many sessions (requests' connections) HAProxy has sent to each server so far."""
        return {row["svname"]: int(row["stot"] or 0) for row in self._stats_rows()}

    def wait_state(self, n: int, state: str, timeout: float = 30) -> float:
        """Wait until HAProxy shows server ``n`` in ``state``; the seconds that took."""
        return wait_until(lambda: self.states().get(f"api-{n}") == state, timeout,
                          f"HAProxy showing api-{n} {state}", interval=0.05)

    def _stats_rows(self) -> list[dict]:
        text = requests.get(self.stats_url + ";csv", timeout=5).text
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return [r for r in rows if r["pxname"] == BACKEND and r["svname"].startswith("api-")]

    # -- users and the command line --------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``blockdrive *args`` with the cluster's configuration."""
        out = subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, timeout=600)
        if check and out.returncode != 0:
            raise RuntimeError(f"blockdrive {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out

    def user(self, admin: bool = False) -> LoadUser:
        """A new account (password ``password123``, as :meth:`harness.server.Server.user` makes)."""
        c = Server(self.url, self.env, self.folder / "home").user(admin=admin)
        return LoadUser(c.email, c.token)

    def _server_proc(self, n: int) -> Proc:
        env = {**self.env, "BLOCKDRIVE_HOME": str(self.folder / f"api-{n}" / "home")}
        argv = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.ports[n - 1]),
                "--workers", str(self.workers)]
        return Proc(f"api-{n}", argv, self.folder / f"api-{n}" / "server.log", env=env)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    if found is None:
        raise AssertionError("no CSRF token in the form")
    return found.group(1)


def cross_server_checks(cluster: ApiCluster, user: LoadUser, admin: LoadUser, password: str = "password123") -> dict:
    """Work that starts on one server and goes on on another, straight to the servers' own
    ports: a tus upload whose PATCHes go to different servers, a long-poll on one server
    woken by a write through another, a web-app session and an admin session made on one
    server and used on another. Returns a boolean per case and the long-poll's wake-up time."""
    out: dict = {}
    srv = [cluster.server_url(n) for n in range(1, cluster.count + 1)]

    def on(i: int) -> str:
        return srv[i % len(srv)]

    auth = {"Authorization": f"Bearer {user.token}"}
    # tus: created on one server, each PATCH on the next, the offset asked of yet another
    data = os.urandom(3 * 300_000 + 17)
    r = requests.post(on(0) + "/api/v1/uploads/", timeout=30, headers={
        **auth, **TUS, "Upload-Length": str(len(data)),
        "Upload-Metadata": "filename " + base64.b64encode(b"across.bin").decode()})
    path = urlsplit(r.headers.get("Location", "")).path
    statuses = [r.status_code]
    for i, start in enumerate(range(0, len(data), 300_000), start=1):
        p = requests.patch(on(i) + path, data=data[start:start + 300_000], timeout=30, headers={
            **auth, **TUS, "Upload-Offset": str(start), "Content-Type": "application/offset+octet-stream"})
        statuses.append(p.status_code)
    h = requests.head(on(len(statuses)) + path, headers={**auth, **TUS}, timeout=30)
    offset, node = int(h.headers.get("Upload-Offset", -1)), h.headers.get("X-Blockdrive-Node-Id")
    body = requests.get(f"{cluster.url}/api/v1/nodes/{node}/content", headers=auth, timeout=30).content \
        if node else b""
    out["tus_patches_across_servers"] = (statuses == [201] + [204] * (len(statuses) - 1) and offset == len(data)
                                         and hashlib.sha256(body).digest() == hashlib.sha256(data).digest())

    # long-poll parked on one server, woken by an upload through another
    cursor = requests.get(on(0) + "/api/v1/changes/latest", headers=auth, timeout=30).json()["cursor"]
    answer: dict = {}

    def wait() -> None:
        w = requests.get(on(0) + "/api/v1/changes/wait", params={"cursor": cursor, "timeout": 30},
                         headers=auth, timeout=60)
        answer.update(status=w.status_code, body=w.json(), at=time.monotonic())

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(1.0)  # the long-poll is parked before the write
    account = requests.get(on(1) + "/api/v1/account", headers=auth, timeout=30).json()
    written = time.monotonic()
    put = requests.put(f"{on(1)}/api/v1/nodes/{account['root_id']}/children/wake.txt", data=b"wake up",
                       headers=auth, timeout=30)
    waiter.join(60)
    out["longpoll_woken_across_servers"] = (put.status_code == 201 and answer.get("status") == 200
                                            and answer.get("body") == {"changes": True})
    out["longpoll_wake_s"] = round(answer["at"] - written, 3) if "at" in answer else None

    # web app: signed in on one server, the session cookie used on another
    web = requests.Session()
    form = web.get(on(0) + "/", timeout=30)
    signed = web.post(on(0) + "/login", data={"email": user.email, "password": password, "csrf": _csrf(form.text)},
                      allow_redirects=False, timeout=30)
    page = web.get(on(1) + "/", timeout=30)
    out["web_session_across_servers"] = (signed.status_code == 303 and page.status_code == 200
                                         and 'name="password"' not in page.text)
    # admin dashboard: signed in on one server, used on another
    adm = requests.Session()
    form = adm.get(on(1) + "/admin/login", timeout=30)
    signed = adm.post(on(1) + "/admin/login", data={"token": admin.token, "csrf": _csrf(form.text)},
                      allow_redirects=False, timeout=30)
    dash = adm.get(on(2) + "/admin", allow_redirects=False, timeout=30)
    out["admin_session_across_servers"] = signed.status_code == 303 and dash.status_code == 200
    return out


def throughput(cluster: ApiCluster, users: list[LoadUser], ledger: Path, seconds: float,
               processes: int) -> dict[str, float]:
    """Small PUTs per second through the balancer with 1, 2 and 3 (up to ``cluster.count``)
    servers in rotation, the others stopped; every server runs again at the end."""
    out = {}
    for n in range(1, cluster.count + 1):
        for m in range(1, cluster.count + 1):
            if m > n and cluster.servers[m - 1].alive():
                cluster.stop_server(m)
                cluster.wait_state(m, "DOWN")
            elif m <= n and not cluster.servers[m - 1].alive():
                cluster.restart(m)
                cluster.wait_state(m, "UP")
        load = Load(cluster.url, users, ledger, processes=processes, mix=SMALL_PUTS).start()
        time.sleep(seconds)
        report = load.stop()
        tot = report.totals()
        out[f"servers_{n}"] = round(tot["acknowledged"] / report.seconds, 1) if report.seconds else 0.0
    return out


def _seconds_until(cluster: ApiCluster, n: int, state: str, timeout: float) -> float | None:
    """Seconds until HAProxy showed server ``n`` in ``state``; None if it did not in ``timeout``."""
    try:
        return cluster.wait_state(n, state, timeout)
    except TimeoutError:
        return None


def api_failover(folder: Path, database_url: str, storage_url: str, quick: bool = True) -> dict:
    """The API tier's drill (see the module's docstring); returns its figures, with the pass
    conditions as ``lost_acknowledged_writes``, ``different_acknowledged_writes``,
    ``errors_after_retry`` (all 0), ``killed_server_marked_down``, ``restarted_server_marked_up``,
    ``restarted_server_took_requests``, ``fsck_clean`` and the ``cross_server`` cases (all true).
    The figures are also written to ``folder/api-figures.json``."""
    folder = Path(folder)
    processes, warm, outage, after, tp_seconds = (4, 5, 4, 5, 4) if quick else (8, 20, 30, 20, 30)
    figures: dict = {"quick": quick}
    phases = figures["phase_seconds"] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    with ApiCluster(folder, database_url, storage_url) as cluster:
        phase("start")
        users = [cluster.user() for _ in range(2 if quick else 4)]
        admin = cluster.user(admin=True)
        figures["cross_server"] = cross_server_checks(cluster, users[0], admin)
        phase("cross_server")

        ledger = folder / "ledger.jsonl"
        load = Load(cluster.url, users, ledger, processes=processes, quick=quick).start()
        time.sleep(warm)
        killed_at = time.time()
        cluster.kill(1)
        down_s = _seconds_until(cluster, 1, "DOWN", timeout=30)
        time.sleep(outage)
        restarted_at = time.monotonic()
        ready_s = cluster.restart(1)
        up_s = _seconds_until(cluster, 1, "UP", timeout=60)
        up_s = None if up_s is None else time.monotonic() - restarted_at
        up_at = time.time()
        before = cluster.served()["api-1"]
        time.sleep(after)
        took = cluster.served()["api-1"] - before
        report = load.stop()

        during = report.totals(killed_at - 1, up_at + 1)
        error_seconds = sorted(s - int(killed_at) for s, c in report.per_second.items()
                               if c["retried"] or c["failed"])
        figures["load"] = report.as_dict()
        figures["failover"] = {
            "kill_to_down_s": down_s and round(down_s, 3), "restart_to_ready_s": round(ready_s, 3),
            "restart_to_up_s": up_s and round(up_s, 3), "errors_before_retry": during["retried"],
            "errors_after_retry": during["failed"], "requests_ok": during["ok"],
            "seconds_with_errors_after_kill": error_seconds, "requests_to_restarted_server": took}
        figures["killed_server_marked_down"] = down_s is not None
        figures["restarted_server_marked_up"] = up_s is not None
        figures["restarted_server_took_requests"] = took > 0

        phase("failover")
        tp_ledger = folder / "ledger-throughput.jsonl"
        figures["small_puts_per_second"] = throughput(cluster, users, tp_ledger, tp_seconds, processes)

        phase("throughput")
        checked = {"checked": 0, "lost": 0, "different": 0}
        for path in (ledger, tp_ledger):
            for key, value in verify(path, cluster.url, users).items():
                checked[key] += value
        figures["verified"] = checked
        figures["lost_acknowledged_writes"] = checked["lost"]
        figures["different_acknowledged_writes"] = checked["different"]
        figures["errors_after_retry"] = report.totals()["failed"]
        figures["download_mismatches"] = report.totals()["mismatched"]
        phase("verify")
        fsck = cluster.cli("fsck", "--deep", check=False)
        phase("fsck")
        figures["fsck_clean"] = fsck.returncode == 0
        figures["fsck_output"] = fsck.stdout.strip().splitlines()[-3:]
    (folder / "api-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures
