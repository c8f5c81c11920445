"""The read side's bookkeeping: when each pack was last read, for the tiering job.

The pack store (storage/packstore.py) calls :meth:`ReadTracker.note` after each ranged
read; the tracker writes ``packs.last_read_at`` in batches, never once per read.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .batching import batches
from .clock import now
from .models import Pack

log = logging.getLogger(__name__)


class ReadTracker:
    """Remembers which packs were read and writes ``last_read_at`` for all of them at most
    once every ``interval`` seconds, in one statement. A crash loses at most one interval of
    read times, which only delays tiering decisions by that much."""

    def __init__(self, sm: sessionmaker[Session], interval: float = 60.0):
        self.sm, self.interval = sm, interval
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def note(self, pack_url: str) -> None:
        pack_id = pack_url.rsplit("/", 1)[-1].removesuffix(".pack")
        with self._lock:
            self._seen.add(pack_id)
            due = time.monotonic() - self._last >= self.interval
        if due:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            pack_ids, self._seen = sorted(self._seen), set()
            self._last = time.monotonic()
        if not pack_ids:
            return 0
        t = now()
        try:
            with self.sm() as s, s.begin():
                for part in batches(pack_ids):
                    s.execute(sa.update(Pack).where(Pack.id.in_(part)).values(last_read_at=t)
                              .execution_options(synchronize_session=False))
        except Exception:  # noqa: BLE001 - a read must never fail because of bookkeeping
            log.warning("could not record last-read times of %d packs", len(pack_ids), exc_info=True)
        return len(pack_ids)
