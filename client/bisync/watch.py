"""``bisync --watch``: a round on every change, local or remote, until stopped.

Local changes come from a watchdog observer on the local folder; remote ones from a thread
long-polling ``GET /api/v1/changes/wait`` with the state's cursor. Either wakes the loop, which
waits until events stop coming for ``DEBOUNCE`` seconds and runs a round. A round's own writes
wake it once more; that round finds nothing to do. The puller's temporary files are ignored.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from ..api import ClientError

log = logging.getLogger("blockdrive.bisync")

DEBOUNCE = 0.2      # seconds without an event before a round starts
WAIT = 25           # seconds a long-poll is held by the server
RETRY = 2.0         # seconds before a failed round or long-poll is tried again
PATIENCE = 2.0      # seconds of events without a pause after which a round starts anyway
CHANGES = {"created", "modified", "deleted", "moved", "closed"}  # watchdog's event types that change a file


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event):
        self.wake = wake

    def on_any_event(self, event) -> None:
        if event.event_type not in CHANGES:
            return  # a file opened or read (by a round itself, say) changed nothing
        paths = (getattr(event, "src_path", ""), getattr(event, "dest_path", ""))
        if all(".blockdrive-" in str(p) or not p for p in paths):
            return  # our own temporary files, being written or renamed into place
        self.wake.set()


def _poll_remote(b, stop: threading.Event, wake: threading.Event, idle: threading.Event) -> None:
    """Long-poll the change feed from the state's cursor; wake the loop on a change and wait
    for a round to take a newer cursor."""
    while not stop.is_set():
        idle.wait()
        cursor = b.state().get("cursor")
        if not cursor:
            stop.wait(RETRY)
            continue
        try:
            changed = b.c.api.changes_wait(cursor, WAIT)
        except ClientError as exc:
            log.debug("long-poll failed: %s", exc)
            changed = exc.status == 410  # a reset: a round lists the tree again
            if not changed:
                stop.wait(RETRY)
        if changed and not stop.is_set():
            idle.clear()
            wake.set()


def watch(b, stop: threading.Event) -> None:
    """Run rounds of ``b`` (a :class:`client.bisync.Bisync`) on every change until ``stop``."""
    wake, idle = threading.Event(), threading.Event()
    observer = Observer()
    observer.schedule(_Wake(wake), b.local, recursive=True)
    observer.start()
    poller = threading.Thread(target=_poll_remote, args=(b, stop, wake, idle), daemon=True, name="bd-longpoll")
    try:
        wake.set()  # a first round at once
        poller.start()
        while not stop.is_set():
            if not wake.wait(0.5):
                continue
            until = time.monotonic() + PATIENCE
            while wake.is_set() and not stop.is_set() and time.monotonic() < until:  # until events stop coming
                wake.clear()
                stop.wait(DEBOUNCE)
            if stop.is_set():
                break
            try:
                report = b.run()
                if report.up or report.down or report.moved or report.deleted or report.conflicts:
                    b.say(report.summary())
            except ClientError as exc:
                print(f"blockdrive: error: {exc} (trying again)", file=sys.stderr)
                stop.wait(RETRY)
                wake.set()
            idle.set()
    finally:
        observer.stop()
        observer.join(timeout=5)
        idle.set()
