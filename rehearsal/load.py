"""A steady client load on blockdrive's API, made the way real clients make it, for the
rehearsal's drills (an API server, a DataNode or a Spark worker killed while it runs).

:class:`Load` runs several client processes against one base URL (the balancer). Each loops
over a mix of operations (:data:`MIX`): small and medium file uploads (PUT), tus uploads in
several PATCHes, downloads of what it uploaded (bytes compared), folder listings, and
long-polls on ``/api/v1/changes/wait``. A request that meets a connection error or a 502, 503
or 504 is sent again a few times with a short back-off, as a real client would; a tus upload
asks the server for its offset (HEAD) and resumes from there.

Every acknowledged upload is appended to a ledger, a JSON-lines file (user, node, name,
sha256, size, how it was uploaded): :func:`verify` reads each one back afterwards and compares
the bytes. Each process counts, per second, the requests that succeeded (``ok``), the failed
attempts it then retried (``retried``), and the requests still failed after every retry
(``failed``); :class:`LoadReport` adds them up.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .procs import Proc

__all__ = ["MIX", "SMALL_PUTS", "LoadUser", "LoadReport", "Load", "verify"]

# How often each operation is picked (relative weights).
MIX = {"small_put": 30, "medium_put": 8, "tus": 5, "download": 20, "listing": 20, "longpoll": 5}
# Only small uploads: the throughput figure (small PUTs per second).
SMALL_PUTS = {"small_put": 1}

RETRY_STATUS = frozenset({502, 503, 504})
ATTEMPTS = 6          # a request is sent at most this often
BACKOFF = 0.5         # seconds before the first retry, doubled each time: 15.5 s over 6 attempts, as
                      # blockdrive's own client waits (client/api.py, without its jitter)
TUS = {"Tus-Resumable": "1.0.0"}
TUS_CHUNK = 512 * 1024
ROOT = Path(__file__).resolve().parents[1]  # where ``python -m rehearsal.load`` runs


@dataclass(frozen=True)
class LoadUser:
    """An account the load acts as: its email (the ledger's key) and API token."""
    email: str
    token: str


@dataclass
class LoadReport:
    """What the clients counted: ``per_second`` maps a wall-clock second (``int(time.time())``)
    to its counts of ``ok``, ``retried``, ``failed``, ``mismatched`` (a download whose bytes
    differed) and ``acknowledged`` (uploads written to the ledger)."""
    per_second: dict[int, Counter] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, per_second: dict[int, dict]) -> None:
        for sec, counts in per_second.items():
            self.per_second.setdefault(int(sec), Counter()).update(counts)

    def totals(self, start: float | None = None, end: float | None = None) -> Counter:
        """The counts summed over all seconds, or over those in ``[start, end]`` (epoch seconds)."""
        out: Counter = Counter()
        for sec, counts in self.per_second.items():
            if (start is None or sec >= int(start)) and (end is None or sec <= int(end)):
                out.update(counts)
        return out

    def as_dict(self) -> dict:
        tot = self.totals()
        return {"seconds": round(self.seconds, 1), "requests_ok": tot["ok"],
                "errors_before_retry": tot["retried"], "errors_after_retry": tot["failed"],
                "download_mismatches": tot["mismatched"], "acknowledged_uploads": tot["acknowledged"],
                "requests_per_second": round(tot["ok"] / self.seconds, 1) if self.seconds else 0.0}


class Load:
    """``processes`` client processes against ``url`` as ``users`` (taken in turn), appending
    acknowledged uploads to ``ledger``, until :meth:`stop`. ``quick`` keeps files small. Each
    client is ``python -m rehearsal.load`` (so a caller's own script is never imported again
    in it), with its output in ``load-<n>.log`` beside the ledger. Use as a context manager
    or call :meth:`start` and :meth:`stop`."""

    def __init__(self, url: str, users: list[LoadUser], ledger: Path, processes: int = 4,
                 quick: bool = True, mix: dict[str, int] | None = None):
        self.url, self.users, self.ledger = url.rstrip("/"), list(users), Path(ledger)
        self.processes, self.quick, self.mix = processes, quick, dict(mix or MIX)
        self._clients: list[tuple[Proc, Path]] = []
        self._started = 0.0

    def start(self) -> Load:
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        self.ledger.touch()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        run = secrets.token_hex(3)
        for i in range(self.processes):
            user = self.users[i % len(self.users)]
            counts = self.ledger.parent / f"load-{run}-{i}.counts.json"
            spec = {"index": i, "url": self.url, "email": user.email, "token": user.token,
                    "ledger": str(self.ledger), "quick": self.quick, "mix": self.mix, "counts": str(counts)}
            proc = Proc(f"load-{i}", [sys.executable, "-m", "rehearsal.load", json.dumps(spec)],
                        self.ledger.parent / f"load-{i}.log", env=env, cwd=ROOT).start()
            self._clients.append((proc, counts))
        self._started = time.monotonic()
        return self

    def stop(self, timeout: float = 120) -> LoadReport:
        """Ask every client to finish its current operation (SIGTERM), wait for them, and add
        up their counts. A client still busy after ``timeout`` seconds is killed; its counts
        are then missing (the report has fewer ``ok``)."""
        report = LoadReport(seconds=time.monotonic() - self._started)
        for proc, _ in self._clients:  # all told first, so they finish together
            if proc.alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc, counts in self._clients:
            proc.stop(timeout)
            if counts.exists():
                report.add(json.loads(counts.read_text()))
                counts.unlink()
        self._clients = []
        return report

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_exc) -> None:
        if self._clients:
            self.stop()


def verify(ledger: Path, url: str, users: list[LoadUser], threads: int = 4) -> dict:
    """Read back every upload in ``ledger`` through ``url`` and compare size and SHA-256.
    Returns ``checked``, ``lost`` (not found, or not readable after retries) and ``different``."""
    tokens = {u.email: u.token for u in users}
    local = threading.local()

    def check(line: str) -> str:
        entry = json.loads(line)
        sessions = local.__dict__.setdefault("sessions", {})
        s = sessions.get(entry["user"]) or sessions.setdefault(entry["user"], _session(tokens[entry["user"]]))
        r = _retrying(s, "GET", f"{url.rstrip('/')}/api/v1/nodes/{entry['node']}/content")
        if r is None or r.status_code != 200:
            return "lost"
        if len(r.content) != entry["size"] or hashlib.sha256(r.content).hexdigest() != entry["sha256"]:
            return "different"
        return "same"

    lines = Path(ledger).read_text().splitlines()
    with ThreadPoolExecutor(threads) as pool:
        results = Counter(pool.map(check, lines))
    return {"checked": len(lines), "lost": results["lost"], "different": results["different"]}


def _session(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def _retrying(s: requests.Session, method: str, url: str, on_retry=None, **kw) -> requests.Response | None:
    """``method url`` sent until it is answered with something other than 502/503/504, at most
    :data:`ATTEMPTS` times; the last answer, or None if the last attempt could not connect."""
    for attempt in range(ATTEMPTS):
        try:
            r = s.request(method, url, timeout=60, **kw)
        except requests.RequestException:
            r = None
        if r is not None and r.status_code not in RETRY_STATUS:
            return r
        if attempt == ATTEMPTS - 1:
            return r
        if on_retry:
            on_retry()
        time.sleep(BACKOFF * 2 ** attempt)
    return None


class _Client:
    """One client process's state: its session, folder, uploads so far and counts."""

    def __init__(self, index: int, url: str, user: LoadUser, ledger: str, quick: bool):
        self.index, self.url, self.user, self.ledger, self.quick = index, url, user, ledger, quick
        self.s = _session(user.token)
        self.counts: dict[int, Counter] = {}
        self.uploaded: list[tuple[int, str, int]] = []  # (node, sha256, size)
        self.folder: int | None = None
        self.seq = 0

    def count(self, what: str) -> None:
        self.counts.setdefault(int(time.time()), Counter())[what] += 1

    def call(self, method: str, path: str, expect: tuple[int, ...], **kw) -> requests.Response | None:
        """One request with the client's retries, counted; the response if its status is
        one of ``expect``, else None."""
        r = _retrying(self.s, method, self.url + path, on_retry=lambda: self.count("retried"), **kw)
        if r is not None and r.status_code in expect:
            self.count("ok")
            return r
        self.count("failed")
        return None

    def setup(self) -> bool:
        root = self.call("GET", "/api/v1/account", (200,))
        if root is None:
            return False
        name = f"load-{self.index}-{secrets.token_hex(4)}"
        r = self.call("POST", f"/api/v1/nodes/{root.json()['root_id']}/children", (201,),
                      json={"name": name, "kind": "folder"})
        if r is not None:
            self.folder = r.json()["id"]
        return self.folder is not None

    def name(self, ext: str) -> str:
        self.seq += 1
        return f"f{self.index}-{self.seq}-{secrets.token_hex(3)}.{ext}"

    def acknowledged(self, node: int, name: str, data: bytes, how: str) -> None:
        digest = hashlib.sha256(data).hexdigest()
        line = json.dumps({"user": self.user.email, "node": node, "name": name, "sha256": digest,
                           "size": len(data), "via": how}) + "\n"
        # One write of a short line to a file opened for appending: lines of several
        # processes never interleave.
        with open(self.ledger, "a") as f:
            f.write(line)
        self.uploaded.append((node, digest, len(data)))
        self.count("acknowledged")

    def put(self, size: int) -> None:
        data, name = os.urandom(size), self.name("bin")
        r = self.call("PUT", f"/api/v1/nodes/{self.folder}/children/{name}", (200, 201), data=data)
        if r is not None:
            self.acknowledged(r.json()["id"], name, data, "put")

    def tus(self, size: int) -> None:
        data, name = os.urandom(size), self.name("tus")
        meta = (f"filename {base64.b64encode(name.encode()).decode()},"
                f"parent_id {base64.b64encode(str(self.folder).encode()).decode()}")
        r = self.call("POST", "/api/v1/uploads/", (201,), headers={**TUS, "Upload-Length": str(size),
                                                                 "Upload-Metadata": meta})
        if r is None:
            return
        path = urlsplit(r.headers["Location"]).path
        offset, node, misses = 0, None, 0
        while offset < size or node is None:
            if offset < size:
                try:
                    r = self.s.patch(self.url + path, data=data[offset:offset + TUS_CHUNK], timeout=60,
                                     headers={**TUS, "Upload-Offset": str(offset),
                                              "Content-Type": "application/offset+octet-stream"})
                except requests.RequestException:
                    r = None
                if r is not None and r.status_code == 204:
                    self.count("ok")
                    offset, misses = int(r.headers["Upload-Offset"]), 0
                    node = r.headers.get("X-Blockdrive-Node-Id")
                    continue
                misses += 1
                if misses >= ATTEMPTS:
                    self.count("failed")
                    return
                self.count("retried")
                time.sleep(BACKOFF * 2 ** (misses - 1))
            # resume where the server says the upload stands (some of the lost PATCH may have arrived)
            h = self.call("HEAD", path, (200,), headers=TUS)
            if h is None:
                return
            offset, node = int(h.headers["Upload-Offset"]), h.headers.get("X-Blockdrive-Node-Id")
            if offset >= size and node is None:  # complete, yet no file: not acknowledged
                self.count("failed")
                return
        self.acknowledged(int(node), name, data, "tus")

    def download(self) -> None:
        if not self.uploaded:
            return
        node, digest, size = random.choice(self.uploaded)
        r = self.call("GET", f"/api/v1/nodes/{node}/content", (200,))
        if r is not None and (len(r.content) != size or hashlib.sha256(r.content).hexdigest() != digest):
            self.count("mismatched")

    def listing(self) -> None:
        self.call("GET", f"/api/v1/nodes/{self.folder}/children", (200,), params={"limit": 100})

    def longpoll(self) -> None:
        r = self.call("GET", "/api/v1/changes/latest", (200,))
        if r is not None:
            self.call("GET", "/api/v1/changes/wait", (200,), params={"cursor": r.json()["cursor"], "timeout": 2})

    def step(self, op: str) -> None:
        small, medium, tus = ((1_000, 64_000), (100_000, 500_000), (600_000, 1_200_000)) if self.quick \
            else ((1_000, 256_000), (1_000_000, 8_000_000), (4_000_000, 16_000_000))
        if op == "small_put":
            self.put(random.randint(*small))
        elif op == "medium_put":
            self.put(random.randint(*medium))
        elif op == "tus":
            self.tus(random.randint(*tus))
        elif op == "download":
            self.download()
        elif op == "listing":
            self.listing()
        elif op == "longpoll":
            self.longpoll()
        else:
            raise ValueError(f"unknown load operation {op!r}")


def _client_main(spec: dict) -> None:
    """One client process: loop over the mix until SIGTERM, then write its counts."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    client = _Client(spec["index"], spec["url"], LoadUser(spec["email"], spec["token"]), spec["ledger"],
                     spec["quick"])
    ops, weights = list(spec["mix"]), list(spec["mix"].values())
    try:
        while not stopping.is_set() and not client.setup():
            time.sleep(1)
        while not stopping.is_set():
            client.step(random.choices(ops, weights)[0])
    finally:
        Path(spec["counts"]).write_text(json.dumps({sec: dict(c) for sec, c in client.counts.items()}))


if __name__ == "__main__":
    _client_main(json.loads(sys.argv[1]))
