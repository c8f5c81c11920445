"""Named durability boundaries of the write, upload, GC, compaction and tiering paths.

Code calls :func:`reach` at each boundary. Nothing happens in normal operation. Tests use it two
ways: register a callable in :data:`HOOKS` (in-process: hold a step, raise, look around), or set
``BLOCKDRIVE_CRASH_AT=<point>`` (or ``<point>@<n>`` for the n-th time the point is reached) in a
process's environment to have that process SIGKILLed right there; the crash tests then restart
and check that every acknowledged version still reads back byte-identical.

Every point a test can name is listed in :data:`POINTS`, with what is durable when it is reached.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Callable

ENV = "BLOCKDRIVE_CRASH_AT"

POINTS: dict[str, str] = {
    # a PUT (and the CLI's put): blocks -> open pack -> commit -> response
    "put:pack_written": "every new block of the upload is in the open pack; the pack is not closed",
    "put:pack_closed": "the pack file is closed and synced; no version points at its blocks yet",
    "put:before_commit": "blocks durable, pack row open; the version is not committed",
    "put:after_commit": "the version is committed; the client has not had its response",
    # the shared open pack (storage/sharedpack.py): the requests of one process append, then
    # share an fsync, then commit each its own metadata; earlier ones may be committed already
    "shared:appended": "a request's records are written to the shared open pack, not yet synced",
    "shared:synced": "a request's records are durable in the shared open pack; it is not committed",
    # group commit (storage/groupcommit.py): the puts committing at once share a transaction
    "group:before_commit": "every commit of a group ran in its savepoint; the transaction is not committed",
    "group:after_commit": "a group's transaction is committed; none of its requests is answered",
    # tus: a chunk's blocks and tail -> session row -> (last chunk) the version
    "tus:chunk_stored": "a chunk's blocks and new tail are stored; the session's offset is unchanged",
    "tus:chunk_committed": "the session's offset moved on; the previous tail is not yet removed",
    "tus:after_finish": "the upload's version is committed; the client has not had its response",
    # the block API: PUT /blocks/{id}, then POST .../commit
    "block:stored": "a sent block is in a closed pack; it is not registered or pinned yet",
    "block:after_commit": "a version made of sent blocks is committed; no response yet",
    # gc
    "gc:after_purge": "trash past retention purged (versions gone, refcounts lowered)",
    "gc:after_expire": "expired upload sessions aborted, their pins gone",
    "gc:after_mark": "unreferenced blocks marked dead, not swept",
    "gc:after_sweep": "blocks dead past the grace period swept from the index",
    "gc:after_abandon": "open packs of crashed uploads retired",
    "pack:row_deleted": "a retiring pack's row says deleted; its file is still there",
    "pack:file_deleted": "a deleted pack's file is gone; its row still has its size",
    # compact
    "compact:after_delete": "retired packs past the grace period deleted",
    "compact:after_write": "merged packs written and registered open; blocks still point at the old packs",
    "compact:after_switch": "blocks point at the merged packs; the old packs are retiring",
    # tier
    "tier:after_delete": "retired packs past the grace period deleted",
    "tier:after_copy": "cold copies written and registered open; blocks still point at the hot packs",
    "tier:after_switch": "blocks point at the cold copies; the hot packs are retiring",
}

HOOKS: dict[str, Callable[[], None]] = {}

_lock = threading.Lock()
_seen: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, _, nth = spec.partition("@")
    return name, int(nth or 1)


def reach(name: str) -> None:
    """Called at the boundary ``name``: SIGKILL this process if the environment names it,
    else run the hook registered for it, if any."""
    target = _target()
    if target is not None and target[0] == name:
        with _lock:
            _seen[name] = n = _seen.get(name, 0) + 1
        if n >= target[1]:
            os.kill(os.getpid(), signal.SIGKILL)
    fn = HOOKS.get(name)
    if fn is not None:
        fn()
