"""The HDFS tier of the rehearsal: a MiniDFSCluster of its own (one NameNode, three DataNodes,
replication 3) started from the repository's launcher (scripts/minidfs), and the drill that stops a
DataNode while a blockdrive server writes and reads packs there.

``MiniHdfs`` drives the launcher's control port (``--control-port``: ``status``,
``stop-datanode I``, ``mark-dead I``, ``restart-datanode I``, one line of JSON back for each).
``hdfs_failover`` runs the drill and returns its figures.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests

from .procs import Proc, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_DIR = ROOT / "scripts" / "minidfs"
LAUNCHER_JAR = LAUNCHER_DIR / "target" / "minidfs-launcher-1.0.jar"
LAUNCHER_MAIN = "blockdrive.minidfs.Launcher"

__all__ = ["MiniHdfs", "LauncherMissing", "launcher_problem", "hdfs_failover"]


class LauncherMissing(RuntimeError):
    """Java or the built launcher is not there (or the jar is older than its sources)."""


def launcher_problem() -> str | None:
    """Why the launcher cannot run here, or None when it can: no ``java``, no jar, or a jar
    older than its sources (then it lacks what they added)."""
    if shutil.which("java") is None:
        return "java not found (scripts/services.sh installs a JDK 17 and Maven)"
    deps = LAUNCHER_DIR / "target" / "dependency"
    if not LAUNCHER_JAR.is_file() or not deps.is_dir():
        return f"{LAUNCHER_JAR} is not built: run scripts/services.sh build"
    sources = [LAUNCHER_DIR / "pom.xml", *(LAUNCHER_DIR / "src").rglob("*.java")]
    if any(p.stat().st_mtime > LAUNCHER_JAR.stat().st_mtime for p in sources):
        return f"{LAUNCHER_JAR} is older than its sources: run scripts/services.sh build"
    return None


class MiniHdfs:
    """An HDFS cluster in one JVM on 127.0.0.1 with its data under ``folder``: NameNode RPC,
    NameNode HTTP (WebHDFS, JMX) and the control channel each on a free port.

    DataNodes are named by their index at startup (0..datanodes-1), stable across stops and
    restarts. ``conf`` adds Hadoop settings (``-Dkey=value``)."""

    def __init__(self, folder: Path, datanodes: int = 3, replication: int = 3, heap: str = "768m",
                 conf: dict[str, str] | None = None, directory: str = "/blockdrive"):
        self.folder = Path(folder)
        self.datanodes, self.replication, self.heap = datanodes, replication, heap
        # Re-replicate in seconds, not minutes: Hadoop's defaults pace it for big clusters
        # (2 blocks per DataNode every 3 s).
        self.conf = {"dfs.namenode.redundancy.interval.seconds": "1",
                     "dfs.namenode.replication.work.multiplier.per.iteration": "50",
                     "dfs.namenode.replication.max-streams": "50",
                     "dfs.namenode.replication.max-streams-hard-limit": "100",
                     # a copy to a DataNode that then died is retried after this, not after 5 min
                     "dfs.namenode.reconstruction.pending.timeout-sec": "15", **(conf or {})}
        self.directory = directory
        self.nn_port = self.http_port = self.control_port = 0
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        """``hdfs://127.0.0.1:PORT/DIR``: the test directory over NameNode RPC."""
        return f"hdfs://127.0.0.1:{self.nn_port}{self.directory}"

    @property
    def http_url(self) -> str:
        """The NameNode's HTTP address (WebHDFS under /webhdfs/v1, metrics under /jmx)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 180) -> MiniHdfs:
        """Format a fresh namespace and start the cluster; returns once every DataNode has
        registered (the launcher's ``MINIDFS READY``). Raises ``LauncherMissing`` when the
        launcher cannot run here."""
        problem = launcher_problem()
        if problem:
            raise LauncherMissing(problem)
        self.nn_port, self.http_port, self.control_port = free_port(), free_port(), free_port()
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = ["java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=256m",
                "-Djava.net.preferIPv4Stack=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-Dorg.slf4j.simpleLogger.showDateTime=true",
                "-cp", f"{LAUNCHER_JAR}:{LAUNCHER_DIR / 'target' / 'dependency'}/*", LAUNCHER_MAIN,
                "--base", str(data), "--nn-port", str(self.nn_port), "--http-port", str(self.http_port),
                "--control-port", str(self.control_port), "--datanodes", str(self.datanodes),
                "--replication", str(self.replication), "--dir", self.directory, "--format",
                *(f"-D{k}={v}" for k, v in self.conf.items())]
        log = self.folder / "minidfs.log"
        seen = log.stat().st_size if log.exists() else 0  # the log is appended to across starts
        self.proc = Proc("minidfs", argv, log).start()

        def ready() -> bool:
            if not self.proc.alive():
                raise RuntimeError("MiniDFS exited:\n" + self.proc.tail())
            with open(log, "rb") as f:
                f.seek(seen)
                return b"MINIDFS READY" in f.read()
        try:
            wait_until(ready, timeout, "MiniDFS", interval=0.5)
        except TimeoutError:
            self.kill()
            raise
        return self

    def control(self, command: str) -> dict:
        """Send one command on the control channel; its JSON answer. Raises ``RuntimeError``
        when the launcher answers an error."""
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=60) as s:
            s.sendall(command.encode() + b"\n")
            answer = json.loads(s.makefile("r", encoding="utf-8").readline())
        if "error" in answer:
            raise RuntimeError(f"minidfs {command}: {answer['error']}")
        return answer

    def status(self) -> dict:
        """DataNodes alive (as the launcher runs them), live/dead counts as the NameNode sees
        them, under-replicated, pending-replication and missing blocks."""
        return self.control("status")

    def stop_datanode(self, i: int) -> None:
        """Stop DataNode ``i`` at once (its data stays on disk); the NameNode notices only when
        its heartbeats are overdue, as with a crashed machine."""
        self.control(f"stop-datanode {i}")

    def mark_dead(self, i: int) -> None:
        """Tell the NameNode that stopped DataNode ``i`` is dead now, rather than after its
        heartbeats are overdue (30 s here, 10.5 min with Hadoop's defaults)."""
        self.control(f"mark-dead {i}")

    def restart_datanode(self, i: int) -> None:
        """Start DataNode ``i`` again with its old ports and data."""
        self.control(f"restart-datanode {i}")

    def wait_replicated(self, timeout: float = 120) -> float:
        """Wait until every DataNode is live and no block is under-replicated, pending
        replication or missing; the seconds that took."""
        last: dict = {}

        def whole() -> bool:
            last.update(self.status())
            return (last["live"] == self.datanodes and last["under_replicated"] == 0
                    and last["pending_replication"] == 0 and last["missing"] == 0)
        try:
            return wait_until(whole, timeout, "HDFS replication", interval=0.5)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last status {last}") from None

    def stop(self) -> None:
        """Shut the cluster down (SIGTERM: the launcher's shutdown hook stops it cleanly)."""
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def __enter__(self) -> MiniHdfs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Load:
    """A few threads that upload random files through the API and read acknowledged ones back,
    retrying a failed request as a client would; counts failures by phase. (A small stand-in
    for a shared client load.)"""

    def __init__(self, client, folder_id: int, threads: int, retries: int = 5):
        self.client, self.folder_id, self.retries = client, folder_id, retries
        self.acked: dict[int, bytes] = {}
        self.phase = "before"
        self.counts: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _count(self, key: str) -> None:
        with self.lock:
            phase = self.counts.setdefault(self.phase, {})
            phase[key] = phase.get(key, 0) + 1

    def _call(self, kind: str, send) -> object | None:
        """``send()`` until it answers 2xx; None when every try failed."""
        for attempt in range(self.retries + 1):
            try:
                r = send()
                if r.status_code < 300:
                    return r
            except requests.RequestException:  # a dropped connection is a failed try like a 5xx
                pass
            self._count(f"{kind}_failed_tries")
            if attempt == 0:
                self._count(f"{kind}s_failed_first_try")
            time.sleep(min(0.5 * 2 ** attempt, 4))
        self._count(f"{kind}s_failed_after_retry")
        return None

    def _run(self, t: int) -> None:
        rng = random.Random(t)
        n = 0
        while self.running:
            data = rng.randbytes(rng.randint(20_000, 400_000))
            name = f"t{t}-{n}.bin"
            r = self._call("upload", lambda: self.client.upload(self.folder_id, name, data))
            if r is not None:
                with self.lock:
                    self.acked[r.json()["id"]] = data
                self._count("uploads_acknowledged")
            with self.lock:
                ids = list(self.acked)
            if ids:
                node = rng.choice(ids)
                r = self._call("read", lambda: self.client.get(f"/api/v1/nodes/{node}/content"))
                if r is not None:
                    self._count("reads_ok" if r.content == self.acked[node] else "reads_different")
            n += 1

    def start(self) -> None:
        for th in self.threads:
            th.start()

    def stop(self) -> None:
        self.running = False
        for th in self.threads:
            th.join(timeout=300)


def hdfs_failover(folder: Path, database_url: str | None = None, quick: bool = True) -> dict:
    """The DataNode drill: a blockdrive server with its packs on a 3-DataNode, replication-3
    MiniHdfs under a small upload/download load; DataNode 1 is stopped mid-uploads, the NameNode
    learns of it, the load goes on, the DataNode is restarted, and the drill waits until no block
    is under-replicated. Then every acknowledged upload is read back and ``fsck --deep`` runs.

    ``quick`` (CI): 3 load threads, 25 s with the DataNode down, the NameNode told of the death
    (``mark-dead``) 2 s after the stop; otherwise 4 threads, 90 s down, and the NameNode given
    60 s to notice the missed heartbeats itself before it is told
    (``namenode_noticed_by_itself`` says which). Returns JSON-serialisable figures; the pass conditions
    are ``lost_acknowledged_writes == 0``, ``different_reads == 0``,
    ``under_replicated_after == 0`` and ``fsck_clean``. ``load`` counts requests by phase
    (``before``, ``datanode_down``, ``after_restart``); ``live_datanodes_over_time`` holds
    ``[seconds, live DataNodes, under-replicated blocks]`` every 2 s."""
    from harness.server import BIN, start_server, stop_server

    folder = Path(folder)
    threads, down_seconds, notice_seconds = (3, 25, 2) if quick else (4, 90, 60)
    figures: dict = {"quick": quick, "datanodes": 3, "replication": 3, "stopped_datanode": 1}
    samples: list[list] = []
    with MiniHdfs(folder / "hdfs", datanodes=3, replication=3) as hdfs:
        proc, server = start_server(folder / "server", database_url, workers=2,
                                    extra_env={"BLOCKDRIVE_STORAGE_URL": hdfs.url})
        sampling = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not sampling.wait(2):
                try:
                    s = hdfs.status()
                except OSError:
                    continue
                samples.append([round(time.monotonic() - t0, 1), s["live"], s["under_replicated"]])
        sampler = threading.Thread(target=sample, daemon=True)
        try:
            user = server.user()
            load = _Load(user, user.mkdir(user.root, "drill")["id"], threads)
            sampler.start()
            load.start()
            time.sleep(5)
            load.phase = "datanode_down"
            hdfs.stop_datanode(1)
            stopped = time.monotonic()
            try:
                wait_until(lambda: hdfs.status()["dead"] == 1, notice_seconds, "dead DataNode", 0.5)
                figures["namenode_noticed_by_itself"] = True
            except TimeoutError:
                # Under load this MiniDFS may take minutes to expire the heartbeats; until the
                # NameNode knows, it keeps putting the dead node in new blocks' pipelines.
                hdfs.mark_dead(1)
                figures["namenode_noticed_by_itself"] = False
            figures["seconds_until_namenode_knew"] = round(time.monotonic() - stopped, 1)
            # Uploads in flight at the death wait ~15 s for the NameNode to accept their last
            # block before they fail and are retried: the window is longer than that.
            time.sleep(max(0.0, down_seconds - (time.monotonic() - stopped)))
            figures["under_replicated_peak"] = hdfs.status()["under_replicated"]
            hdfs.restart_datanode(1)
            restarted = time.monotonic()
            load.phase = "after_restart"
            time.sleep(5)
            load.stop()
            hdfs.wait_replicated(180)
            # from the restart: the load went on for a few seconds of it
            figures["seconds_until_replicated"] = round(time.monotonic() - restarted, 1)
            sampling.set()
            sampler.join()
            final = hdfs.status()
            figures["under_replicated_after"] = final["under_replicated"]
            figures["missing_blocks_after"] = final["missing"]
            figures["load"] = load.counts
            figures["uploads_acknowledged"] = len(load.acked)
            lost = different = 0
            for node, data in load.acked.items():
                r = user.get(f"/api/v1/nodes/{node}/content")
                if r.status_code != 200:
                    lost += 1
                elif r.content != data:
                    different += 1
            figures["lost_acknowledged_writes"] = lost
            figures["different_reads"] = different + sum(c.get("reads_different", 0) for c in load.counts.values())
            fsck = subprocess.run([str(BIN), "fsck", "--deep", "--json"], env=server.env,
                                  capture_output=True, text=True, timeout=600)
            figures["fsck_clean"] = fsck.returncode == 0
            figures["fsck"] = fsck.stdout.strip()[-2000:] or fsck.stderr.strip()[-2000:]
        finally:
            sampling.set()
            stop_server(proc)
    figures["live_datanodes_over_time"] = samples
    return figures
