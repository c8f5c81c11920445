"""The read side's bookkeeping: when each pack was last read, for the tiering job, and how
long a read may use the pack locations it looked up.

The pack store (storage/packstore.py) calls :meth:`ReadTracker.note` after each ranged
read; the tracker writes ``packs.last_read_at`` in batches, never once per read.

A read looks blocks up (block -> pack, offset) and then reads them, and a download may be
paused by a slow client between the two. :func:`read_current` bounds that: a location is used
for at most ``storage.read_location_max_seconds`` after it was looked up, then looked up
again; and a read that fails on a location that is no longer current (its pack was superseded
and deleted) looks the block up again once. That bound is what lets compact and tier delete a
superseded pack's file soon after it left the index (storage/packlife.py) instead of after a
fixed grace period.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import islice
from typing import Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .batching import batches
from .clock import now
from .errors import BlockdriveError
from .models import Block, Pack
from .packstore import BlockLocation

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


READ_PART = 256  # locations taken from the caller's iterable, and looked up again, at a time


def locate(sm: sessionmaker[Session], block_ids: Iterable[bytes]) -> dict[bytes, BlockLocation]:
    """Where each of ``block_ids`` is now; a block no longer stored is absent."""
    out: dict[bytes, BlockLocation] = {}
    with sm() as s:
        for part in batches(sorted(set(block_ids))):
            for r in s.execute(sa.select(Block.id, Block.size, Block.stored_size, Pack.url, Block.offset_in_pack)
                               .join(Pack, Pack.id == Block.pack_id).where(Block.id.in_(part))):
                out[r[0]] = BlockLocation(*r)
    return out


def read_current(read: Callable[[list[BlockLocation]], Iterator[bytes]],
                 relocate: Callable[[list[bytes]], dict[bytes, BlockLocation]],
                 locations: Iterable[BlockLocation], max_age: float,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[bytes]:
    """The blocks at ``locations``, in order, read with ``read`` (the pack store's
    ``read_blocks``), never from a location looked up more than ``max_age`` seconds before
    its read starts: past that, the locations not yet read are looked up again with
    ``relocate``. The age counts from when a location is taken from ``locations`` (which the
    caller looks up just before), ``READ_PART`` at a time, so a lazy iterable is not held whole.

    A read that fails is tried once more if looking its block up again gives another
    location (the pack was superseded and its file deleted meanwhile); if the location is
    the same, or the second try fails too, the error goes to the caller."""
    it = iter(locations)
    while part := list(islice(it, READ_PART)):
        yield from _read_part(read, relocate, part, max_age, clock)


def _read_part(read, relocate, part: list[BlockLocation], max_age: float, clock) -> Iterator[bytes]:
    looked_up = clock()
    blocks = read(part)
    i, retried = 0, -1
    while i < len(part):
        if clock() - looked_up > max_age:
            part[i:] = _again(relocate, part[i:])
            looked_up, blocks = clock(), read(part[i:])
        try:
            raw = next(blocks)
        except BlockdriveError:
            fresh = _again(relocate, part[i:])
            if retried == i or fresh[0] == part[i]:
                raise
            log.info("block %s moved from %s while read; reading it at %s", part[i].block_id.hex(),
                     part[i].pack_url, fresh[0].pack_url)
            part[i:], retried = fresh, i
            looked_up, blocks = clock(), read(part[i:])
            continue
        yield raw
        i += 1


def _again(relocate, locs: list[BlockLocation]) -> list[BlockLocation]:
    """``locs`` looked up again; a block no longer stored keeps its old location (its read
    then fails as it would have)."""
    now_at = relocate([loc.block_id for loc in locs])
    return [now_at.get(loc.block_id, loc) for loc in locs]
