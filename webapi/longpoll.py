"""Long-polls that hold no worker thread: ``GET /api/v1/changes/wait``.

gunicorn's threads serve one request each, so a client waiting 90 seconds for a change would
hold a thread for 90 seconds, and a few hundred waiting clients would take every thread. So
the view (:mod:`webapi.changes`) checks the cursor, and when nothing is there yet it takes the
connection away from gunicorn (:meth:`webapi.serve.DeadlineSocket.hand_over`) and gives it to
this module's :class:`Waiters`: one asyncio loop per server process, on a thread of its own,
that holds every waiting connection as a registered socket (a few hundred bytes each, no
thread, no stack). The request's thread returns at once.

Every ``changes.wait_poll_seconds`` the loop asks the journal, in one query per 500 journals
followed, whether anything changed for any of its waiters (:meth:`storage.changes.ChangeFeed.woken`):
a change made through another server process is seen there as soon as it commits, on SQLite
and MySQL alike, with no notification channel between processes. Each woken waiter gets
``{"changes": true}``; one whose timeout passes gets ``{"changes": false}``; one whose client
hangs up is dropped.

Behind a server that cannot hand a connection over (the development server, a test client),
the request waits in its own thread instead, checking the journal at the same pace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from storage.changes import ChangeFeed, Watch
from storage.errors import RetryLater

log = logging.getLogger("blockdrive.longpoll")


def answer(changes: bool) -> bytes:
    """The whole HTTP response a handed-over long-poll gets."""
    body = json.dumps({"changes": changes}).encode()
    head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            "Referrer-Policy: same-origin\r\nConnection: close\r\n\r\n")
    return head.encode() + body


@dataclass(eq=False)
class Waiter:
    sock: object
    watch: Watch
    deadline: float  # time.monotonic()
    fd: int = field(default=-1)


def raise_fd_limit() -> int:
    """Lift this process's open-file limit to its hard limit (each waiter holds a socket) and
    return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it was: the waiter limit below still bounds what is held
    return soft


class Waiters:
    """The waiting long-polls of one server process (see the module's docstring)."""

    def __init__(self, feed: ChangeFeed, poll_seconds: float, max_waiters: int):
        self.feed, self.poll, self.max = feed, poll_seconds, max_waiters
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: set[Waiter] = set()
        self._db = None

    @property
    def count(self) -> int:
        return len(self._waiting)

    def _started(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started on first use (gunicorn forks its workers after the app
        is built, and a loop or thread does not survive a fork)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                raise_fd_limit()
                self._pid, self._waiting = os.getpid(), set()
                self._loop = asyncio.new_event_loop()
                self._db = ThreadPoolExecutor(1, thread_name_prefix="blockdrive-longpoll-db")
                threading.Thread(target=self._run, args=(self._loop,), name="blockdrive-longpoll",
                                 daemon=True).start()
            return self._loop

    def park(self, take: Callable[[], socket.socket], watch: Watch, timeout: float) -> None:
        """Take the connection (``take`` hands over one whose request was read, and that
        nothing else will touch) and hold it until something changes for ``watch`` or
        ``timeout`` seconds pass. RetryLater, with the connection left where it was, when
        this process holds ``changes.max_waiters`` already."""
        if self.count >= self.max:
            raise RetryLater(f"this server holds {self.max} waiting clients already (changes.max_waiters)")
        loop = self._started()
        loop.call_soon_threadsafe(self._add, Waiter(take(), watch, time.monotonic() + timeout))

    def wait_here(self, watch: Watch, timeout: float) -> bool:
        """Wait in the calling thread (a server that cannot hand connections over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(self.poll, max(deadline - time.monotonic(), 0)))
            if self.feed.woken([watch]):
                return True
        return False

    # ---- the loop's thread -------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.create_task(self._ticks())
        loop.run_forever()

    def _add(self, w: Waiter) -> None:
        try:
            w.sock.setblocking(False)
            w.fd = w.sock.fileno()
            self._loop.add_reader(w.fd, self._readable, w)
        except (OSError, ValueError):
            self._close(w)
            return
        self._waiting.add(w)

    def _readable(self, w: Waiter) -> None:
        """The client hung up (or sent bytes a long-poll never expects): let it go."""
        try:
            data = w.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(w, None)

    def _finish(self, w: Waiter, changes: bool | None) -> None:
        if w not in self._waiting:
            return
        self._waiting.discard(w)
        self._loop.remove_reader(w.fd)
        if changes is not None:
            try:  # a few hundred bytes: the socket's send buffer takes them whole
                w.sock.send(answer(changes))
            except OSError:
                pass  # the client is gone; there is nobody to tell
        self._close(w)

    @staticmethod
    def _close(w: Waiter) -> None:
        try:
            w.sock.close()
        except OSError:
            pass

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll)
            if not self._waiting:
                continue
            waiting = list(self._waiting)
            try:
                # on a thread of its own: the loop keeps taking new waiters while it queries
                woken = await loop.run_in_executor(self._db, self.feed.woken, [w.watch for w in waiting])
            except Exception:  # noqa: BLE001 - logged; the waiters stay and the next tick tries again
                log.exception("checking the change journal for waiting clients failed")
                woken = []
            ready = {id(x) for x in woken}
            now = time.monotonic()
            for w in waiting:
                if id(w.watch) in ready:
                    self._finish(w, True)
                elif w.deadline <= now:
                    self._finish(w, False)
