"""The shared open pack: small writes from every request of one server process go into one
pack, so a thousand one-byte blocks make one pack file, not a thousand (DESIGN.md, "Packs").

The rules that keep it as safe as a pack per request:

- the pack's ``open`` row is registered before its first byte, like any pack's;
- a request's records are appended under the process-wide lock, then made durable
  (``sync()``: flush and fsync) before :meth:`SharedPacks.append` returns, so before the
  request's metadata commits and before it is answered. Appends that arrive while an fsync
  runs are covered by the next one: concurrent requests share fsyncs (group commit);
- blocks rows point at records of a pack still ``open``; a reader reads them like any record
  (every record describes itself and is checked by its CRC32C). The commit that inserts them
  requires the pack to be ``open`` or ``sealed`` (never ``retiring``): GC's
  ``abandon_open_packs`` leaves alone an open pack blocks point to, and a pack retired while
  a request was between append and commit fails that commit (retried) instead of pointing
  blocks at a file about to be deleted;
- the pack is sealed (footer written, closed, row ``sealed`` with its size and checksum) at
  ``target_bytes``, after ``idle_seconds`` without an append, at ``max_age_seconds`` (kept far
  below ``jobs.open_pack_grace_seconds``, after which GC takes an open pack for a crashed
  one), and at process exit;
- a process killed with a shared pack open leaves a file with records and no footer, some of
  them committed. :func:`storage.packlife.abandon_open_packs` recovers it once it is past
  the open-pack grace: the records blocks point to are copied into a new sealed pack with a
  footer, the blocks switched to it, and the old file retired like any superseded pack.
  Until then readers, fsck and rebuild_index read it record by record.

Only backends whose streams can ``sync()`` (``Backend.appends_durably``: local disk) get a
shared pack. HDFS through pyarrow offers no hsync, WebHDFS and S3 no durable append at all:
there every request still writes and closes its own pack.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref

import sqlalchemy as sa

from . import crashpoints
from . import pack as packfmt
from .blockindex import BlockIndex, pack_live_bytes
from .clock import now
from .models import Pack
from .packstore import ChecksummedWriter, PackStore
from .states import PackState

log = logging.getLogger(__name__)

_LIVE: "weakref.WeakSet[SharedPacks]" = weakref.WeakSet()
_EXIT_HOOKED = False


def _seal_all_at_exit() -> None:
    for sp in list(_LIVE):
        try:
            sp.seal()
        except Exception:  # noqa: BLE001 - at exit: log it; abandon_open_packs recovers the pack
            log.exception("could not seal the shared pack at exit")


class _Open:
    def __init__(self, pack_id: str, url: str, stream: ChecksummedWriter):
        self.id, self.url = pack_id, url
        self.out = stream
        self.writer = packfmt.PackWriter(self.out, uuid.UUID(pack_id).bytes)
        self.opened = self.last = time.monotonic()
        self.synced = 0  # bytes known durable
        self.sync_lock = threading.Lock()
        self.closed = False


class SharedPacks:
    """The process's shared open pack (one at a time). ``append`` is thread-safe."""

    def __init__(self, packs: PackStore, index: BlockIndex, *, max_request_bytes: int, target_bytes: int, idle_seconds: float,
                 max_age_seconds: float):
        self.packs, self.index = packs, index
        self.max_request_bytes = max_request_bytes
        self.target_bytes, self.idle, self.max_age = target_bytes, idle_seconds, max_age_seconds
        self._reset()
        global _EXIT_HOOKED
        _LIVE.add(self)
        if not _EXIT_HOOKED:
            import atexit
            atexit.register(_seal_all_at_exit)
            _EXIT_HOOKED = True

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cur: _Open | None = None
        self._watcher: threading.Thread | None = None
        self._orphans: list = []

    def _check_fork(self) -> None:
        # A forked worker must not write through its parent's open file: its buffered bytes
        # would be flushed twice. It is kept referenced (never closed or collected here) and
        # the child opens its own pack.
        if os.getpid() != self._pid:
            orphan = self._cur
            self._reset()
            if orphan is not None:
                self._orphans.append(orphan)

    @property
    def current_id(self) -> str | None:
        cur = self._cur
        return cur.id if cur is not None else None

    def append(self, items) -> tuple[str, list[packfmt.Record]]:
        """Append ``items`` (``(block id, codec, raw size, payload)`` each) to the shared pack
        and make them durable. Returns the pack's id and each item's record."""
        self._check_fork()
        with self._lock:
            cur = self._cur
            if cur is not None and time.monotonic() - cur.opened >= self.max_age:
                self._seal_locked()
            if self._cur is None:
                self._open_locked()
            cur = self._cur
            try:
                recs = [cur.writer.add(bid, codec, raw_size, payload) for bid, codec, raw_size, payload in items]
            except BaseException:
                self._drop_locked()
                raise
            end = cur.writer.size
            cur.last = time.monotonic()
        crashpoints.reach("shared:appended")
        try:
            self._sync(cur, end)
        except BaseException:
            with self._lock:
                if self._cur is cur:
                    self._drop_locked()
            raise
        crashpoints.reach("shared:synced")
        if end >= self.target_bytes:
            with self._lock:
                if self._cur is cur:
                    self._seal_locked()
        return cur.id, recs

    def _sync(self, cur: _Open, end: int) -> None:
        with cur.sync_lock:
            if cur.synced >= end:
                return  # another request's fsync covered these bytes
            if cur.closed:
                # sealed meanwhile: closing made every byte written before it durable
                return
            upto = cur.writer.size  # every byte counted here was handed to the stream already
            cur.out.stream.sync()
            cur.synced = max(cur.synced, upto)

    def _open_locked(self) -> None:
        pack_id = uuid.uuid4().hex
        url = self.packs.hot.url_for(self.packs.pack_key(pack_id))
        self.index.register_open_pack(pack_id, url)  # the row first: a crash leaves a pack GC finds
        _, stream = self.packs.create(pack_id)
        self._cur = _Open(pack_id, url, stream)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, args=(weakref.ref(self),),
                                             name="bd-shared-pack", daemon=True)
            self._watcher.start()

    def _drop_locked(self) -> None:
        """After a failed write or fsync the file's tail is unknown: stop appending to it. Its
        row stays ``open``; records committed before are recovered with it after the grace."""
        cur, self._cur = self._cur, None
        if cur is None:
            return
        with cur.sync_lock:
            cur.closed = True
            try:
                cur.out.stream.close()
            except Exception:  # noqa: BLE001 - already failing; the original error is raised
                log.exception("closing a failed shared pack %s", cur.id)

    def forget(self, pack_id: str) -> None:
        """Stop appending to ``pack_id`` if it is still the current pack: GC or compact gave
        it up (a commit found it retiring), so nothing appended to it can ever commit."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._cur is not None and self._cur.id == pack_id:
                self._drop_locked()

    def seal(self) -> None:
        """Seal the current shared pack, if any (at exit, when idle, in tests)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        cur, self._cur = self._cur, None
        if cur is None:
            return
        with cur.sync_lock:
            cur.writer.finish()
            cur.out.stream.close()  # durable, footer included
            cur.closed = True
            cur.synced = cur.writer.size
        live = pack_live_bytes()
        with self.index.sm() as s, s.begin():
            done = s.execute(sa.update(Pack).where(Pack.id == cur.id, Pack.state == PackState.OPEN).values(
                state=PackState.SEALED, size=cur.writer.size, checksum=cur.out.checksum, live_bytes=live,
                sealed_at=now()).execution_options(synchronize_session=False)).rowcount
        if done != 1:
            log.warning("shared pack %s was no longer open when sealed", cur.id)

    @staticmethod
    def _watch(ref) -> None:
        while True:
            sp = ref()
            if sp is None:
                return
            period = max(0.2, min(sp.idle, sp.max_age) / 4)
            del sp
            time.sleep(period)
            sp = ref()
            if sp is None:
                return
            if os.getpid() != sp._pid:
                return
            try:
                with sp._lock:
                    cur = sp._cur
                    t = time.monotonic()
                    if cur is not None and (t - cur.last >= sp.idle or t - cur.opened >= sp.max_age):
                        sp._seal_locked()
            except Exception:  # noqa: BLE001 - the pack stays open; next tick or exit retries
                log.exception("sealing the idle shared pack")
            del sp
