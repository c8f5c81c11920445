"""The store's invariants after a crash, checked in one place for every reliability test.

:func:`check_store` answers three questions about a store at rest (nothing running on it):

1. **nothing acknowledged is lost**: every version a client was told was stored (a map of
   ``(user id, node id, version id) -> SHA-256`` the test keeps) downloads byte-identical;
2. **the metadata tells the truth**: a deep fsck is clean (every ref names a block row, refs
   tile each version, every block lies in a live pack that exists with its recorded size and
   its bytes hash to its id, refcounts and ``used_bytes`` equal the recomputed ones), plus
   what fsck does not cover: no pin or block list of an ended upload session, no session with
   pins but no row. (Block rows may point into an ``open`` pack: the shared pack of a server
   process, durable before they commit; fsck reads those records like any other.)
3. **garbage is only young**: every orphan (a block nothing refers to or pins, an ``open``
   pack, a retiring pack, a pack file whose row says deleted or is missing, a tus tail that
   is not the current tail of an active session, an active session past its expiry) is
   younger than the grace period. :func:`settle` lets time pass and runs gc and compact the
   way the schedule would, after which the orphan list must be empty of anything older than
   the grace period: crash debris is reclaimed, never kept forever.

Time passes by :func:`age_store` moving every lifetime timestamp of the store back (the same
as the clock moving forward, for this process and for job subprocesses alike).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping

import sqlalchemy as sa

from storage.clock import now
from storage.errors import BlockdriveError
from storage.fsck import fsck
from storage.models import (Block, FileVersion, JobRun, Lock, Node, Pack, UploadChunk, UploadPin,
                            UploadSession, VersionBlock)

# (user id, node id, version id) -> the SHA-256 (bytes or hex) of what the client sent
Acked = Mapping[tuple[int, int, int], bytes | str]

# Timestamps that decide a lifetime (grace, expiry, retention, leases): aged by age_store.
AGED = {Pack: ("created_at", "sealed_at", "last_read_at", "retired_at"),
        Block: ("created_at", "gc_marked_at"),
        Node: ("created_at", "updated_at", "deleted_at"),
        FileVersion: ("created_at",),
        UploadSession: ("created_at", "expires_at"),
        JobRun: ("started_at", "finished_at"),
        Lock: ("expires_at",)}


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)  # acknowledged versions that do not read back
    problems: list[str] = field(default_factory=list)  # fsck and the extra metadata checks
    orphans: list[str] = field(default_factory=list)  # garbage older than the grace period
    checked: int = 0  # acknowledged versions read back

    @property
    def ok(self) -> bool:
        return not (self.lost or self.problems or self.orphans)

    def __str__(self) -> str:
        out = [f"{len(self.lost)} lost, {len(self.problems)} problems, {len(self.orphans)} old orphans "
               f"({self.checked} acknowledged versions checked)"]
        for title, rows in (("LOST", self.lost), ("PROBLEM", self.problems), ("ORPHAN", self.orphans)):
            out += [f"  {title}: {r}" for r in rows[:50]]
        return "\n".join(out)


def _hex(sha: bytes | str) -> str:
    return sha if isinstance(sha, str) else sha.hex()


def lost_versions(drive, acked: Acked) -> tuple[list[str], int]:
    """Each acknowledged version that does not download with its SHA-256 (or not at all)."""
    lost = []
    for (user_id, node_id, version_id), sha in sorted(acked.items()):
        what = f"user {user_id} node {node_id} version {version_id}"
        try:
            _node, v, chunks = drive.open(user_id, node_id, version_id=version_id)
            h = hashlib.sha256()
            for data in chunks:
                h.update(data)
        except BlockdriveError as exc:
            lost.append(f"{what}: {type(exc).__name__}: {exc}")
            continue
        if h.hexdigest() != _hex(sha):
            lost.append(f"{what}: read back SHA-256 {h.hexdigest()}, acknowledged {_hex(sha)}")
    return lost, len(acked)


def metadata_problems(drive, deep: bool = True) -> list[str]:
    """A deep fsck, and the upload-session rules fsck does not check."""
    out = [str(p) for p in fsck(drive, deep=deep).problems]
    ended = sa.select(UploadSession.id).where(UploadSession.state != "active")
    with drive.sm() as s:
        n = s.execute(sa.select(sa.func.count()).select_from(UploadPin)
                      .where(UploadPin.session_id.in_(ended))).scalar_one()
        if n:
            out.append(f"upload-pins: {n} pins of ended upload sessions")
    return out


def orphans(drive, grace_seconds: float, at: dt.datetime | None = None) -> list[str]:
    """Garbage older than the grace period at ``at`` (now): what gc and compact should have
    reclaimed by then. Young garbage is fine and not listed (an upload's ``open`` pack is
    young for ``jobs.open_pack_grace_seconds``)."""
    at = at or now()
    cutoff = at - dt.timedelta(seconds=grace_seconds)
    open_cutoff = at - dt.timedelta(seconds=max(grace_seconds, drive.config["jobs"]["open_pack_grace_seconds"]))
    out = []
    pinned = sa.exists().where(UploadPin.block_id == Block.id, UploadPin.session_id == UploadSession.id,
                               UploadSession.state == "active")
    with drive.sm() as s:
        for bid, since in s.execute(
                sa.select(Block.id, sa.func.coalesce(Block.gc_marked_at, Block.created_at))
                .where(~sa.exists().where(VersionBlock.block_id == Block.id), ~pinned)):
            if since < cutoff:
                out.append(f"block {bid.hex()}: no ref and no pin since {since}")
        for p in s.execute(sa.select(Pack)).scalars():
            if p.state == "open" and p.created_at < open_cutoff:
                out.append(f"pack {p.id}: open since {p.created_at}")
            elif p.state == "retiring" and p.retired_at < cutoff:
                out.append(f"pack {p.id}: retiring since {p.retired_at}")
            elif p.state == "sealed" and not s.execute(sa.select(Block.id).where(Block.pack_id == p.id)
                                                       .limit(1)).first() and (p.sealed_at or p.created_at) < cutoff:
                out.append(f"pack {p.id}: sealed with no block since {p.sealed_at}")
            elif p.state == "deleted" and p.size:
                out.append(f"pack {p.id}: deleted, but its file ({p.size} bytes) was not removed")
        states = {pid: st for pid, st in s.execute(sa.select(Pack.id, Pack.state))}
        sessions = {r.id: r for r in s.execute(sa.select(UploadSession)).scalars()}
        for sid, us in sessions.items():
            if us.state == "active" and us.expires_at < cutoff:
                out.append(f"upload session {sid}: active, expired at {us.expires_at}")
        n = s.execute(sa.select(sa.func.count()).select_from(UploadChunk).where(
            UploadChunk.session_id.in_(sa.select(UploadSession.id).where(UploadSession.state != "active")))).scalar_one()
        if n:
            out.append(f"upload chunks: {n} block-list rows of ended upload sessions")
    store = drive.blocks
    for backend in filter(None, (store.hot, store.cold)):
        for key, size in backend.list("packs"):
            pid = key.rsplit("/", 1)[-1].removesuffix(".pack")
            if states.get(pid) in (None, "deleted"):
                out.append(f"pack file {key} ({size} bytes): its row is {states.get(pid) or 'missing'}")
    for key, size in store.hot.list("uploads"):
        sid = key.split("/")[1] if key.count("/") >= 2 else ""
        us = sessions.get(sid)
        current = json.loads(us.meta or "{}").get("tail") if us is not None else None
        if us is None or us.state != "active" or (key != current and _tail_end(key) <= us.offset):
            out.append(f"upload tail {key} ({size} bytes): session {us.state if us else 'missing'}, "
                       f"current tail {current}")
    return out


def _tail_end(key: str) -> int:
    """``uploads/<session>/<end offset>.tail`` -> end offset."""
    try:
        return int(key.rsplit("/", 1)[-1].removesuffix(".tail"))
    except ValueError:
        return -1


def check_store(drive, acked: Acked, grace_seconds: float | None = None, deep: bool = True,
                at: dt.datetime | None = None) -> Findings:
    """Every invariant above; ``grace_seconds=None`` skips the orphan check (use it right after
    a crash, before time has passed; pass the grace after :func:`settle`)."""
    f = Findings()
    f.lost, f.checked = lost_versions(drive, acked)
    f.problems = metadata_problems(drive, deep=deep)
    if grace_seconds is not None:
        f.orphans = orphans(drive, grace_seconds, at)
    return f


def assert_store(drive, acked: Acked, grace_seconds: float | None = None, deep: bool = True) -> Findings:
    f = check_store(drive, acked, grace_seconds, deep)
    assert f.ok, str(f)
    return f


# ---- letting time pass -------------------------------------------------------------------------

def age_store(drive, seconds: float) -> None:
    """Move every lifetime timestamp of the store ``seconds`` into the past: to gc, compact,
    tier and upload expiry (in this process or a job subprocess) it is as if that much time
    had passed since the store was last touched."""
    delta = dt.timedelta(seconds=seconds)
    with drive.sm() as s, s.begin():
        for model, cols in AGED.items():
            table = model.__table__
            pk = list(table.primary_key.columns)
            rows = s.execute(sa.select(*pk, *(table.c[c] for c in cols))).all()
            for row in rows:
                keys, values = row[:len(pk)], row[len(pk):]
                new = {c: v - delta for c, v in zip(cols, values) if v is not None}
                if new:
                    s.execute(sa.update(table).where(*(k == v for k, v in zip(pk, keys))).values(**new))


def settle(drive, spark, cfg, grace_seconds: float) -> dt.datetime:
    """What the schedule does to a store left alone: time passes past every grace period and
    expiry, gc (purge, expire, mark, give up on dead uploads), time passes, gc (sweep), time
    passes, compact (delete retired packs, retire empty ones, merge). Returns when the last
    job started: garbage younger than the grace period at that moment may remain."""
    from jobs.runner import run_job
    wait = max(grace_seconds, cfg["jobs"]["open_pack_grace_seconds"], cfg["server"]["upload_expire_seconds"]) + 5
    at = now()
    for job in ("gc", "gc", "compact"):
        age_store(drive, wait)
        at = now()
        res = run_job(job, drive, spark, cfg)
        assert res.status == "ok", res.stats
    return at
