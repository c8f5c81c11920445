"""MariaDB tier of the rehearsal: a primary and a replica from Debian's ``mariadbd``, replicating
for real (row-based binary log, GTID), and the drill that kills the replica while a blockdrive
server lists folders from it.

``MariaDBPair(folder)`` starts both servers on free ports on 127.0.0.1 with their data under
``folder``; ``primary_url`` / ``replica_url`` are blockdrive database URLs for them. The replica
runs with ``read_only=1``, so only replication writes to it.

``replica_failover(folder, quick)`` runs the drill and returns its figures (see its docstring).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pymysql
import requests

from harness.server import BIN, start_server, stop_server

from .procs import Proc, free_port, wait_until

__all__ = ["MARIADBD", "MariaDBPair", "mariadb_available", "replica_failover"]

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = "mariadb-install-db"
DATABASE = "blockdrive"
USER = PASSWORD = "blockdrive"
# The pair's own administrative account (replication control, checksums); loopback only.
ADMIN, ADMIN_PASSWORD = "rehearsal", "rehearsal"
REPL_USER, REPL_PASSWORD = "repl", "repl"
FILES_PER_FOLDER = 500  # the drill's listings ask for pages of 1000


def mariadb_available() -> bool:
    """True when Debian's MariaDB server and its ``mariadb-install-db`` are installed."""
    return MARIADBD.exists() and shutil.which(INSTALL_DB) is not None


def _init_sql() -> str:
    """Run by each server at every start (``--init-file``): the accounts and the database,
    idempotently and kept out of the binary log, so the replica never receives them twice."""
    return "\n".join([
        "SET sql_log_bin=0;",
        f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;",
        f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';",
        f"GRANT ALL PRIVILEGES ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1';",
        f"CREATE USER IF NOT EXISTS '{ADMIN}'@'127.0.0.1' IDENTIFIED BY '{ADMIN_PASSWORD}';",
        f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN}'@'127.0.0.1' WITH GRANT OPTION;",
        f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}';",
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1';",
        "FLUSH PRIVILEGES;",
        "",
    ])


class MariaDBServer:
    """One ``mariadbd`` with its own data folder and port. Run as root it runs as root
    (``--user=root``): the data folder may then sit anywhere, e.g. under a private temporary
    folder the ``mysql`` user could not enter."""

    def __init__(self, name: str, folder: Path, server_id: int, replica: bool):
        self.name, self.folder, self.server_id, self.replica = name, Path(folder), server_id, replica
        self.data = self.folder / "data"
        self.port = free_port()
        # a Unix socket path is limited to 107 bytes, and a test's folder can be longer
        self.socket = Path(tempfile.gettempdir()) / f"blockdrive-mariadb-{self.port}.sock"
        self.proc: Proc | None = None

    def _argv(self) -> list[str]:
        argv = [str(MARIADBD), "--no-defaults", f"--datadir={self.data}",
                f"--socket={self.socket}", f"--pid-file={self.folder / 'mariadbd.pid'}",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                f"--init-file={self.folder / 'init.sql'}",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                "--innodb-buffer-pool-size=64M", "--max-connections=200", "--max-allowed-packet=64M",
                f"--server-id={self.server_id}", "--log-bin=binlog", "--binlog-format=ROW",
                "--log-slave-updates=1", "--gtid-strict-mode=1",
                # blockdrive's search index uses triggers; with a row-based binary log that is safe
                "--log-bin-trust-function-creators=1"]
        if self.replica:
            # relay_log_recovery: after a crash the replica drops its relay log and fetches again
            # from its GTID position, the crash-safe setting.
            argv += ["--read-only=1", "--relay-log=relay", "--relay-log-recovery=1"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    def start(self) -> None:
        """Initialise the data folder on first use, start the server, wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "init.sql").write_text(_init_sql())
        log = self.folder / "mariadbd.log"
        if not (self.data / "mysql").is_dir():
            user = ["--user=root"] if os.geteuid() == 0 else []
            Proc(f"{self.name}-install", [INSTALL_DB, "--no-defaults", *user, f"--datadir={self.data}",
                                          "--auth-root-authentication-method=socket", "--skip-test-db"],
                 self.folder / "install-db.log").start().popen.wait(120)
        self.proc = Proc(self.name, self._argv(), log).start()

        def up() -> bool:
            if not self.proc.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.proc.tail()}")
            try:
                self.admin("SELECT 1")
                return True
            except pymysql.err.OperationalError:
                return False
        wait_until(up, 120, f"{self.name} on port {self.port}", interval=0.3)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def connect(self, user: str = ADMIN, password: str = ADMIN_PASSWORD, database: str | None = None):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               database=database, connect_timeout=3, read_timeout=60, autocommit=True)

    def admin(self, sql: str, args=None) -> list[tuple]:
        """Run one statement as the pair's administrator; its rows."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}?charset=utf8mb4"


class MariaDBPair:
    """A primary and a replica replicating from it by GTID, with data under ``folder``.

    ``start()`` (or ``with MariaDBPair(folder) as pair``) starts both and the replication;
    ``stop()`` stops both. The replica can be killed and restarted; it resumes from its GTID
    position (``MASTER_USE_GTID=slave_pos``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.primary = MariaDBServer("mariadb-primary", self.folder / "primary", 1, replica=False)
        self.replica = MariaDBServer("mariadb-replica", self.folder / "replica", 2, replica=True)

    def __enter__(self) -> MariaDBPair:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def primary_url(self) -> str:
        return self.primary.url

    @property
    def replica_url(self) -> str:
        return self.replica.url

    def start(self) -> None:
        try:
            self.primary.start()
            self.replica.start()
            self.replica.admin(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER=%s, "
                "MASTER_PASSWORD=%s, MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos",
                (self.primary.port, REPL_USER, REPL_PASSWORD))
            self.replica.admin("START SLAVE")
            wait_until(self.replicating, 60, "replication to start", interval=0.2)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()

    def kill_replica(self) -> None:
        self.replica.kill()

    def restart_replica(self) -> None:
        """Start the replica again on its port and data; it reconnects to the primary by itself
        (the replication settings are kept in its data folder)."""
        self.replica.start()
        if not self.replicating():
            self.replica.admin("START SLAVE")

    def slave_status(self) -> dict:
        conn = self.replica.connect()
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SHOW SLAVE STATUS")
                return cur.fetchone() or {}
        finally:
            conn.close()

    def replicating(self) -> bool:
        """Both replication threads of the replica run."""
        st = self.slave_status()
        return st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes"

    def primary_position(self) -> str:
        return self.primary.admin("SELECT @@gtid_binlog_pos")[0][0]

    def lag(self) -> float | None:
        """``Seconds_Behind_Master`` of the replica (None while it is not replicating)."""
        value = self.slave_status().get("Seconds_Behind_Master")
        return None if value is None else float(value)

    def caught_up(self, timeout: float = 0) -> bool:
        """The replica has applied everything the primary had committed when this was asked,
        waiting up to ``timeout`` seconds for it."""
        pos = self.primary_position()
        return self.replica.admin("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, timeout))[0][0] == 0

    def table_checksums(self, server: MariaDBServer) -> dict[str, tuple[int, str]]:
        """Every table of the blockdrive database: its row count and a hash of its rows (the
        same on two servers exactly when their rows are)."""
        out: dict[str, tuple[int, str]] = {}
        conn = server.connect(database=DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW TABLES")
                for (table,) in cur.fetchall():
                    cur.execute(f"SELECT * FROM `{table}`")
                    # sorted here: rows that tie on the key a server would order by may come in any order
                    rows = sorted(repr(row) for row in cur.fetchall())
                    out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
        finally:
            conn.close()
        return out


def _db_reads(metrics_text: str, label: str = "target") -> dict[str, float]:
    """``blockdrive_db_reads_total`` from a /metrics page, summed by ``label`` (target or reason)."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("blockdrive_db_reads_total{"):
            labels, value = line[len("blockdrive_db_reads_total{"):].rsplit("} ", 1)
            key = dict(p.split("=", 1) for p in labels.split(","))[label].strip('"')
            out[key] = out.get(key, 0.0) + float(value)
    return out


class _Load:
    """Uploads and folder listings in a loop on threads, each upload's acknowledgement and each
    listing's outcome recorded with its time."""

    def __init__(self, server, threads: int):
        self.server, self.threads = server, threads
        self.stopping = threading.Event()
        self.acked: list[tuple] = []  # (client, node id, bytes) of every upload answered 200/201
        self.listings: list[tuple[float, int]] = []  # (time, status or 0 for no answer)
        self.stale_listings = 0
        self.upload_errors: list[str] = []
        self.lock = threading.Lock()
        self.workers: list[threading.Thread] = []

    def start(self) -> None:
        """Create the users and their folders, then start the threads."""
        clients = [self.server.user() for _ in range(self.threads)]
        for client in clients:
            t = threading.Thread(target=self._run, args=(client,), daemon=True)
            t.start()
            self.workers.append(t)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.workers:
            t.join(120)

    def run_for(self, seconds: float, listings: int) -> None:
        """Let the load run at least ``seconds`` and until it made ``listings`` more listings."""
        start, before = time.monotonic(), len(self.listings)
        wait_until(lambda: time.monotonic() - start >= seconds and len(self.listings) - before >= listings,
                   300, f"{listings} listings")

    def _run(self, client) -> None:
        n = 0
        while not self.stopping.is_set():
            if n % FILES_PER_FOLDER == 0:  # a listing (one page) then always holds the whole folder
                folder = client.mkdir(client.root, f"load{n // FILES_PER_FOLDER}")["id"]
            name = f"f{n}.bin"
            data = os.urandom(2048) + name.encode()
            try:
                r = client.upload(folder, name, data)
                if r.status_code in (200, 201):
                    with self.lock:
                        self.acked.append((client, r.json()["id"], data))
                else:
                    self.upload_errors.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as exc:
                self.upload_errors.append(repr(exc))
            # the listing right after this thread's own write must show it (read-your-writes)
            try:
                r = client.get(f"/api/v1/nodes/{folder}/children", params={"limit": 1000})
                status = r.status_code
                if status == 200 and name not in {c["name"] for c in r.json()["items"]}:
                    with self.lock:
                        self.stale_listings += 1
            except requests.RequestException:
                status = 0
            with self.lock:
                self.listings.append((time.monotonic(), status))
            n += 1


def replica_failover(folder: str | os.PathLike, quick: bool = True) -> dict:
    """The replica tier's drill: a blockdrive server on the pair (writes to the primary, folder
    listings from the replica); uploads and listings running; kill the replica; restart it; check.

    Figures: ``reads_replica_share`` (share of counted reads served by the replica),
    ``listing_errors_while_replica_down`` (must be 0), ``catch_up_seconds`` (from the replica's
    restart until it has applied all the primary had, its start-up included:
    ``replica_start_seconds``), ``stale_listings`` (a listing right after
    its own upload that missed it: must be 0), ``tables_equal``, ``lost_acknowledged_writes``,
    ``fsck_clean`` and ``replica_served_again``."""
    folder = Path(folder)
    # each phase (replica up, down, back) lasts this long and makes at least this many listings
    phase, per_phase = (3.0, 20) if quick else (30.0, 300)
    figures: dict = {"quick": quick}
    pair = MariaDBPair(folder / "mariadb")
    proc = None
    pair.start()
    try:
        proc, server = start_server(folder / "api", pair.primary_url, workers=2, extra_env={
            "BLOCKDRIVE_DATABASE_REPLICA_URL": pair.replica_url,
            "BLOCKDRIVE_DATABASE_REPLICA_WAIT_MS": "200"})

        def reads(label: str = "target") -> dict[str, float]:
            return _db_reads(requests.get(server.url + "/metrics", timeout=10).text, label)

        load = _Load(server, threads=2 if quick else 4)
        load.start()
        try:
            load.run_for(phase, per_phase)
            before_kill = reads()
            t_kill = time.monotonic()
            pair.kill_replica()
            load.run_for(phase, per_phase)
            t_restart = time.monotonic()
            down = reads()
            pair.restart_replica()
            figures["replica_start_seconds"] = round(time.monotonic() - t_restart, 3)
            wait_until(lambda: pair.caught_up(0), 120, "replica catch-up", interval=0.1)
            figures["catch_up_seconds"] = round(time.monotonic() - t_restart, 3)
            at_restart = reads()
            load.run_for(phase, per_phase)
        finally:
            load.stop()
        after = reads()
        during = [status for t, status in load.listings if t_kill <= t < t_restart]
        figures.update(
            listings=len(load.listings),
            listings_while_replica_down=len(during),
            listing_errors_while_replica_down=sum(1 for s in during if s != 200),
            listing_errors=sum(1 for _, s in load.listings if s != 200),
            stale_listings=load.stale_listings,
            upload_errors=len(load.upload_errors),
            acknowledged_uploads=len(load.acked),
            reads=after,
            reads_by_reason=reads("reason"),
            reads_on_primary_while_replica_down=down.get("primary", 0) - before_kill.get("primary", 0),
            reads_on_replica_while_replica_down=down.get("replica", 0) - before_kill.get("replica", 0),
        )
        total = sum(after.values())
        figures["reads_replica_share"] = round(after.get("replica", 0) / total, 3) if total else 0.0
        figures["replica_served_before_kill"] = before_kill.get("replica", 0) > 0
        figures["replica_served_again"] = after.get("replica", 0) > at_restart.get("replica", 0)

        wait_until(lambda: pair.caught_up(0), 120, "replica catch-up after the load")
        figures["tables_equal"] = pair.table_checksums(pair.primary) == pair.table_checksums(pair.replica)
        figures["lost_acknowledged_writes"] = _lost_writes(load.acked)
        stop_server(proc)
        proc = None
        fsck = subprocess.run([str(BIN), "fsck", "--deep"], env=server.env, capture_output=True, text=True,
                              timeout=600)
        figures["fsck_clean"] = fsck.returncode == 0
        figures["fsck"] = (fsck.stdout.strip().splitlines() or [""])[-1]
    finally:
        if proc is not None:
            stop_server(proc)
        pair.stop()
    return figures


def _lost_writes(acked: list[tuple]) -> int:
    """How many acknowledged uploads do not read back byte-identical, each read by its owner."""
    lost = 0
    for client, node_id, data in acked:
        r = client.get(f"/api/v1/nodes/{node_id}/content")
        if r.status_code != 200 or r.content != data:
            lost += 1
    return lost
