"""The random-kill soak: a real server (gunicorn, SQLite) under several client threads that
upload (PUT), edit (new versions), upload with tus (interrupted and resumed later, across
restarts), delete, share and read back, while gc and compact run in a loop; at random
moments the server's process group or the running job is SIGKILLed (a server kill also takes
down a job that does not finish within a few seconds, as a host crash would). After every kill, with
the store at rest (clients hold back, no job runs), ``blockdrive fsck`` must be clean; then
the victim restarts.

At the end every version that got a 2xx (and every tus upload the server called complete)
must read back byte-identical, a deep fsck must be clean, and after time passes and gc and
compact run no orphan older than the grace period may be left (tests/reliability/invariants.py).
Clients check what they read on the way too: a download whose bytes do not hash to the
acknowledged SHA-256 (or to the ETag it came with) counts as a loss.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from storage.config import load_config
from storage.drive import Drive
from storage.errors import NotFound
from tests.e2e.conftest import BIN, Client, start_server
from tests.reliability import figures
from tests.reliability.invariants import check_store, settle

ROOT = Path(__file__).resolve().parents[2]
KILLS = figures.scale(50, 500)
GRACE = 2  # seconds: gc and compact reclaim garbage while the soak runs
TUS = {"Tus-Resumable": "1.0.0"}


class Soak:
    def __init__(self, tmp: Path, shared_spark):
        self.tmp = tmp
        self.shared_spark = shared_spark
        spark_env = shared_spark.env()
        self.proc, self.srv = start_server(tmp, None, workers=2, extra_env={
            "BLOCKDRIVE_GC_GRACE_SECONDS": str(GRACE),
            "BLOCKDRIVE_JOBS_OPEN_PACK_GRACE_SECONDS": "60",
            "BLOCKDRIVE_JOBS_TARGET_PACK_BYTES": str(2 * 1024 * 1024),
            "BLOCKDRIVE_JOBS_SHUFFLE_PARTITIONS": "2",
            "BLOCKDRIVE_JOBS_LEASE_SECONDS": "120",
            # every acknowledged version stays readable: the soak ages the store, and thinning
            # old versions is retention's job (tests/unit/jobs/test_retention.py), not a loss
            "BLOCKDRIVE_RETENTION_KEEP_ALL_SECONDS": str(10**9)})
        self.port = self.srv.url.rsplit(":", 1)[1]
        self.job_env = {**self.srv.env, **spark_env, "PYTHONPATH": str(ROOT)}
        self.lock = threading.Lock()  # guards everything below
        self.acked: dict[tuple[int, int, int], str] = {}
        self.deleting: set[int] = set()  # nodes a delete was sent for (trashed, or maybe)
        self.lost: list[str] = []
        self.fsck_problems: list[str] = []
        self.stop = threading.Event()
        # While set, clients start no request and the job loop no job: fsck needs the store at
        # rest (a process paused with SIGSTOP could hold SQLite's write lock).
        self.hold = threading.Event()
        self.busy = 0  # client operations in flight
        self.job: subprocess.Popen | None = None
        self.ops = {"put": 0, "edit": 0, "tus": 0, "delete": 0, "share": 0, "read": 0, "failed": 0}
        self.jobs_done = {"ok": 0, "killed": 0, "failed": 0}
        self.jvm_restarts = 0

    # ---- the server and the jobs ----------------------------------------------------------------

    def restart_server(self) -> None:
        log = open(self.tmp / "server.log", "ab")
        self.proc = subprocess.Popen([str(BIN), "serve", "--port", self.port, "--workers", "2"],
                                     env=self.srv.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.srv.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert self.proc.poll() is None, (self.tmp / "server.log").read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError("the server did not come back")

    def job_loop(self) -> None:
        """gc and compact, one after the other, for as long as the soak runs."""
        n = 0
        while not self.stop.is_set():
            if self.hold.is_set():
                time.sleep(0.05)
                continue
            job = ("gc", "compact")[n % 2]
            n += 1
            if n % 10 == 0 and self.shared_spark.recycle():  # no job is attached right now
                with self.lock:
                    self.job_env.update(self.shared_spark.env())
                    self.jvm_restarts += 1
            p = subprocess.Popen([sys.executable, "-m", "tests.reliability.driver", "job", job], cwd=ROOT,
                                 env=self.job_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 start_new_session=True)
            with self.lock:
                self.job = p
            _out, err = p.communicate()
            with self.lock:
                self.job = None
                key = "ok" if p.returncode == 0 else "killed" if p.returncode == -9 else "failed"
                self.jobs_done[key] += 1
                if key == "failed" and b"JobBusy" not in err and b"already running" not in err:
                    self.fsck_problems.append(f"{job} failed: {err.decode()[-2000:]}")

    def signal_group(self, proc, sig) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def settle_clients(self) -> None:
        """Wait until no client request is in flight (``hold`` is set, so none starts)."""
        deadline = time.monotonic() + 180
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)

    def fsck(self) -> None:
        out = subprocess.run([str(BIN), "fsck"], env=self.srv.env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            self.fsck_problems.append(out.stdout[-3000:] + out.stderr[-2000:])

    # ---- clients --------------------------------------------------------------------------------

    def ack(self, c: Client, node_id: int, version_id: int, data: bytes) -> None:
        with self.lock:
            self.acked[(c.id, node_id, version_id)] = hashlib.sha256(data).hexdigest()

    def client(self, c: Client, friend: Client, seed: int) -> None:
        rnd = random.Random(seed)
        files: dict[str, tuple[int, bytes]] = {}  # name -> (node id, last acknowledged content)
        pending: list[dict] = []  # tus uploads sent in part, to resume later
        n = 0
        while not self.stop.is_set():
            n += 1
            op = rnd.choices(["put", "edit", "tus", "delete", "share", "read"], [30, 25, 15, 8, 10, 12])[0]
            if op in ("edit", "delete", "share", "read") and not files:
                op = "put"
            while self.hold.is_set() and not self.stop.is_set():
                time.sleep(0.05)
            with self.lock:
                self.busy += 1
            try:
                if pending and rnd.random() < 0.5:
                    self.resume_tus(c, pending, files, rnd)
                elif op == "put" or op == "edit":
                    name = f"f{seed}-{n}.bin" if op == "put" else rnd.choice(sorted(files))
                    data = rnd.randbytes(rnd.randint(1, 600_000))
                    if op == "edit" and rnd.random() < 0.5:  # an edit in the middle: most blocks dedup
                        old = files[name][1]
                        data = old[:len(old) // 2] + data[:50_000] + old[len(old) // 2:]
                    r = c.upload(c.root, name, data)
                    if r.status_code in (200, 201):
                        body = r.json()
                        self.ack(c, body["id"], body["version_id"], data)
                        files[name] = (body["id"], data)
                elif op == "tus":
                    self.start_tus(c, f"t{seed}-{n}.bin", rnd.randbytes(rnd.randint(200_000, 900_000)), pending, rnd)
                elif op == "delete":
                    name = rnd.choice(sorted(files))
                    node_id = files.pop(name)[0]
                    with self.lock:
                        self.deleting.add(node_id)
                    c.delete(f"/api/v1/nodes/{node_id}")
                elif op == "share":
                    node_id = files[rnd.choice(sorted(files))][0]
                    c.post(f"/api/v1/nodes/{node_id}/shares", json={"email": friend.email, "role": "viewer"})
                    self.read(friend, node_id)
                else:
                    name = rnd.choice(sorted(files))
                    self.read(c, files[name][0])
                with self.lock:
                    self.ops[op] += 1
            except requests.RequestException:
                with self.lock:
                    self.ops["failed"] += 1
            finally:
                with self.lock:
                    self.busy -= 1

    def read(self, c: Client, node_id: int) -> None:
        """Download the current version: the bytes must hash to the ETag they came with (the
        content may be a later upload whose answer was lost in a kill, so the client's own
        copy is not the reference; the final check reads every acknowledged version)."""
        r = c.get(f"/api/v1/nodes/{node_id}/content")
        if r.status_code != 200:
            return
        got = hashlib.sha256(r.content).hexdigest()
        etag = r.headers.get("ETag", "").strip('"').removeprefix("W/").strip('"')
        if got != etag:
            with self.lock:
                self.lost.append(f"node {node_id}: downloaded bytes hash to {got}, ETag {etag}")

    def start_tus(self, c: Client, name: str, data: bytes, pending: list, rnd) -> None:
        meta = "filename " + base64.b64encode(name.encode()).decode()
        r = c.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
        if r.status_code != 201:
            return
        up = {"url": r.headers["Location"], "name": name, "data": data}
        cut = rnd.randint(1, len(data) - 1)  # send a part now, the rest later
        c.s.patch(up["url"], data=data[:cut], timeout=120, headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        pending.append(up)

    def resume_tus(self, c: Client, pending: list, files: dict, rnd) -> None:
        up = pending[0]
        h = c.s.head(up["url"], headers=TUS, timeout=60)
        if h.status_code in (404, 410):
            pending.pop(0)  # expired or lost before its first byte: nothing was acknowledged
            return
        if h.status_code != 200:
            return
        offset, data = int(h.headers["Upload-Offset"]), up["data"]
        if offset < len(data):
            r = c.s.patch(up["url"], data=data[offset:], timeout=120, headers={
                **TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
            if r.status_code != 204:
                return
            node_id = r.headers.get("X-Blockdrive-Node-Id")
        else:
            node_id = h.headers.get("X-Blockdrive-Node-Id")
        pending.pop(0)
        # The server has every byte: the file must exist with this content.
        node = c.get(f"/api/v1/resolve?path=/{up['name']}")
        body = node.json() if node.status_code == 200 else {}
        if body.get("etag") != hashlib.sha256(data).hexdigest() or str(body.get("id")) != str(node_id):
            with self.lock:
                self.lost.append(f"tus upload {up['url']} complete, but /{up['name']}: {node.status_code} {body}")
            return
        self.ack(c, body["id"], body["version_id"], data)
        files[up["name"]] = (body["id"], data)


def test_random_kill_soak(tmp_path, shared_spark):
    soak = Soak(tmp_path, shared_spark)
    srv = soak.srv
    users = [srv.user() for _ in range(3)]
    threads = [threading.Thread(target=soak.client, args=(u, users[(i + 1) % 3], i), daemon=True)
               for i, u in enumerate(users)]
    threads.append(threading.Thread(target=soak.job_loop, daemon=True))
    for t in threads:
        t.start()
    rnd = random.Random(7)
    kills = {"server": 0, "job": 0}
    fsck_runs = 0
    t0 = time.monotonic()
    try:
        for _ in range(KILLS):
            time.sleep(rnd.uniform(0.2, 1.0))
            soak.hold.set()
            with soak.lock:
                job = soak.job
            if job is not None and rnd.random() < 0.3:
                soak.signal_group(job, signal.SIGKILL)  # the job, in the middle of whatever it does
                job.wait()
                kills["job"] += 1
                soak.settle_clients()
                soak.fsck()
                fsck_runs += 1
            else:
                soak.signal_group(soak.proc, signal.SIGKILL)  # the server, requests in flight
                soak.proc.wait()
                kills["server"] += 1
                if job is not None:
                    # Let the job finish, else it goes down with the host; now and then wait
                    # long enough that some gc and compact runs complete under the load.
                    patience = 60 if soak.jobs_done["ok"] < kills["server"] // 10 else 3
                    try:
                        job.wait(patience)
                    except subprocess.TimeoutExpired:
                        soak.signal_group(job, signal.SIGKILL)
                        job.wait()
                        kills["job"] += 1
                soak.fsck()
                fsck_runs += 1
                soak.restart_server()
            soak.hold.clear()
    finally:
        soak.stop.set()
        for t in threads:
            t.join(timeout=300)
        soak.signal_group(soak.proc, signal.SIGTERM)
        soak.proc.wait(30)
    seconds = time.monotonic() - t0

    # Every acknowledged version reads back; then time passes, gc and compact run, and no
    # old orphan is left.
    cfg = load_config(env=srv.env)
    drive = Drive(cfg)
    acked = dict(soak.acked)
    for key in list(acked):
        if key[1] in soak.deleting:
            try:
                drive.get(key[0], key[1])
            except NotFound:  # in the trash: the client deleted it
                acked.pop(key)
    f = check_store(drive, acked)
    at = settle(drive, shared_spark.session, cfg, GRACE)
    after = check_store(drive, acked, grace_seconds=GRACE, at=at)
    drive.close()
    lost = sorted(set(soak.lost) | set(f.lost) | set(after.lost))
    figures.record("random kill soak", runs=sum(soak.ops.values()), kills=sum(kills.values()), lost=len(lost),
                   server_kills=kills["server"], job_kills=kills["job"], fsck_runs=fsck_runs,
                   fsck_failed=len(soak.fsck_problems), acked=len(acked), jobs_completed=soak.jobs_done["ok"], jvm_restarts=soak.jvm_restarts,
                   seconds=round(seconds))
    assert not lost, "acknowledged data lost:\n" + "\n".join(lost[:50])
    assert not soak.fsck_problems, "fsck after a restart:\n" + "\n\n".join(soak.fsck_problems[:5])
    assert f.ok and after.ok, f"{f}\n{after}"
    assert len(acked) >= 20 and soak.jobs_done["ok"] > 0, (soak.ops, soak.jobs_done)
