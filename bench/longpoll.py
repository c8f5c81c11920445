"""Waiting long-poll clients (``GET /api/v1/changes/wait``) one server holds, and what they
cost it. Starts ``blockdrive serve`` on a fresh embedded home, opens the connections in
steps, and prints, at each step: the clients held, the server's resident memory (master and
workers) and the time a plain ``GET /api/v1/account`` takes meanwhile (the waits must leave
every thread free), measured once the server has taken the step's requests in (how long that
took is printed too). Then one change wakes them all: how many answered ``true``, and how long
until the last one did. Asserts nothing.

    .venv/bin/python bench/longpoll.py [--clients 10000] [--users 20] [--workers 2] [--step 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from harness.server import start_server, stop_server  # noqa: E402


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, in KiB (from /proc)."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Waiter:
    """One raw HTTP/1.1 long-poll: the request is sent, the answer read when it comes."""

    def __init__(self, host: str, port: int, token: str, cursor: str, timeout: int):
        self.host, self.port = host, port
        self.request = (f"GET /api/v1/changes/wait?cursor={cursor}&timeout={timeout} HTTP/1.1\r\n"
                        f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
        self.answer: bytes | None = None
        self.answered_at: float | None = None

    def changes(self) -> bool | None:
        """The answer's ``changes``, or None when it was no such answer."""
        head, _, body = (self.answer or b"").partition(b"\r\n\r\n")
        try:
            return json.loads(body)["changes"] if head.startswith(b"HTTP/1.1 200") else None
        except (ValueError, KeyError, TypeError):
            return None

    async def run(self, sent: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(self.request)
        await writer.drain()
        sent.set()
        self.answer = await reader.read()  # the server closes after its answer
        self.answered_at = time.monotonic()
        writer.close()


async def open_waiters(waiters: list[Waiter], batch: int = 200) -> list[asyncio.Task]:
    tasks = []
    for i in range(0, len(waiters), batch):
        events = []
        for w in waiters[i:i + batch]:
            ev = asyncio.Event()
            events.append(ev)
            tasks.append(asyncio.create_task(w.run(ev)))
        await asyncio.gather(*(ev.wait() for ev in events))
    return tasks


def timed_get(url: str, token: str) -> float:
    t = time.monotonic()
    r = requests.get(url + "/api/v1/account", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    r.raise_for_status()
    return time.monotonic() - t


async def bench(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.clients + 100 > hard:
        print(f"open-file limit {hard} is below {args.clients} clients; lower --clients or raise ulimit -n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, srv = start_server(Path(tmp), None, workers=args.workers,
                                 extra_env={"BLOCKDRIVE_CHANGES_MAX_WAITERS": str(args.clients + 1000)})
        try:
            users = [srv.user() for _ in range(args.users)]
            cursors = [u.get("/api/v1/changes/latest").json()["cursor"] for u in users]
            host, port = "127.0.0.1", int(srv.url.rsplit(":", 1)[1])
            loop = asyncio.get_running_loop()
            base = rss_kib(proc.pid)
            print(f"server: {args.workers} workers, {args.users} users; idle resident memory {base / 1024:.1f} MiB")
            print(f"{'clients held':>12} {'server RSS MiB':>15} {'KiB per client':>15} {'GET /account ms':>16} "
                  f"{'taken in (s)':>12}")
            waiters: list[Waiter] = []
            tasks: list[asyncio.Task] = []
            while len(waiters) < args.clients:
                n = min(args.step, args.clients - len(waiters))
                new = [Waiter(host, port, users[(len(waiters) + i) % len(users)].token,
                              cursors[(len(waiters) + i) % len(users)], args.timeout) for i in range(n)]
                t0 = time.monotonic()
                tasks += await open_waiters(new)
                waiters += new
                # The server takes the new requests in at its pace: wait until a plain request
                # answers as fast as on an idle server again, then measure.
                while time.monotonic() - t0 < 300:
                    if await loop.run_in_executor(None, timed_get, srv.url, users[0].token) < 0.2:
                        break
                    await asyncio.sleep(0.5)
                settled = time.monotonic() - t0
                mem = rss_kib(proc.pid)
                times = sorted([await loop.run_in_executor(None, timed_get, srv.url, users[0].token) for _ in range(5)])
                gone = sum(1 for w in waiters if w.answer is not None)
                print(f"{len(waiters) - gone:>12} {mem / 1024:>15.1f} {(mem - base) / max(len(waiters), 1):>15.2f} "
                      f"{times[2] * 1000:>16.1f} {settled:>12.1f}")
            t0 = time.monotonic()
            for u in users:  # one change per user wakes every one of its waiters
                u.post(f"/api/v1/nodes/{u.root}/children", json={"name": "wake"}).raise_for_status()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), args.timeout + 30)
            woke = [w for w in waiters if w.changes() is True]
            others: dict[str, int] = {}
            for w in waiters:
                if w not in woke:
                    line = (w.answer or b"(no answer)").split(b"\r\n", 1)[0].decode(errors="replace")
                    others[line] = others.get(line, 0) + 1
            last = max((w.answered_at for w in woke), default=t0) - t0
            print(f"woken by {args.users} changes: {len(woke)} of {len(waiters)} answered true; "
                  f"the last {last:.2f} s after the first change")
            for line, n in sorted(others.items()):
                print(f"  {n} answered otherwise: {line}")
        finally:
            stop_server(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--step", type=int, default=2000)
    ap.add_argument("--timeout", type=int, default=90, help="each long-poll's timeout (s)")
    asyncio.run(bench(ap.parse_args()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
