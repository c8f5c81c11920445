"""Consistency check of the whole store: metadata against itself and against the packs.

Checks, each reported as a :class:`Problem` with a kind and a readable line:

- every ref points to a block row, and every version's refs tile its size exactly;
- every block row points to a sealed (or retiring) pack that exists with the recorded size,
  at an offset where that pack's record names that block; or to an ``open`` shared pack
  (storage/sharedpack.py: its size is not recorded until it is sealed, so the file must only
  reach past the last record a block points to);
- every block's CRC32C (and, with ``deep``, its SHA-256) checks out;
- every refcount equals the number of refs counted from ``version_blocks``;
- every user's ``used_bytes`` equals the charge of every version their files keep
  (:func:`storage.quota.version_charge`), and ``pending_bytes`` what their active upload
  sessions hold;
- every node's ``path`` is its parent's path followed by its parent's id ("/" for a root), so
  the ancestors it names are its parent chain, and every user's ``node_count`` equals the
  nodes they own below their root.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from . import quota
from . import pack as packfmt
from .packstore import BlockLocation
from .errors import BlockdriveError
from .models import Block, FileVersion, Node, Pack, UploadSession, User, VersionBlock
from .names import fold_key, normal
from .tree import ROOT_PATH, child_path
from .states import PackState, UploadState

BATCH = 5000


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class FsckReport:
    problems: list[Problem] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, detail: str) -> None:
        self.problems.append(Problem(kind, detail))


def fsck(drive, deep: bool = False, progress: Callable[[int, int], None] | None = None) -> FsckReport:
    rep = FsckReport()
    sm = drive.sm
    with sm() as s:
        _check_refs(s, rep)
        _check_refcounts(s, rep)
        _check_usage(s, rep, drive.floor)
        _check_tree(s, rep)
        pointed = sa.exists().where(Block.pack_id == Pack.id)
        packs = s.execute(sa.select(Pack).where(sa.or_(Pack.state.in_((PackState.SEALED, PackState.RETIRING)),
                                                       sa.and_(Pack.state == PackState.OPEN, pointed)))).scalars().all()
        rep.stats["packs"] = len(packs)
        for (pack_id, state) in s.execute(sa.select(Block.pack_id, Pack.state).outerjoin(
                Pack, Pack.id == Block.pack_id).where(sa.or_(Pack.id.is_(None),
                                                             Pack.state.not_in((PackState.SEALED, PackState.RETIRING, PackState.OPEN))))
                                          .distinct()):
            rep.add("block-in-bad-pack", f"blocks point to pack {pack_id} which is {state or 'missing'}")
    total = sum(p.size or 0 for p in packs)
    done = 0
    for p in packs:
        _check_pack(drive, p, rep, deep)
        done += p.size or 0
        if progress:
            progress(done, total)
    return rep


def _check_refs(s, rep: FsckReport) -> None:
    missing = s.execute(sa.select(VersionBlock.version_id, VersionBlock.seq, VersionBlock.block_id)
                        .outerjoin(Block, Block.id == VersionBlock.block_id).where(Block.id.is_(None))
                        .limit(1000)).all()
    for vid, seq, bid in missing:
        rep.add("missing-block", f"version {vid} block #{seq} ({bid.hex()}) has no block row")
    last_vid, expect = None, 0
    sizes = dict(s.execute(sa.select(FileVersion.id, FileVersion.size)).all())
    rep.stats["versions"] = len(sizes)
    seen = set()
    q = (sa.select(VersionBlock.version_id, VersionBlock.offset, Block.size)
         .join(Block, Block.id == VersionBlock.block_id)
         .order_by(VersionBlock.version_id, VersionBlock.seq))
    for vid, off, size in s.execute(q.execution_options(yield_per=BATCH)):
        rep.stats["refs"] += 1
        if vid != last_vid:
            if last_vid is not None and expect != sizes.get(last_vid):
                rep.add("bad-version", f"version {last_vid}: blocks cover {expect} bytes, size is {sizes.get(last_vid)}")
            last_vid, expect = vid, 0
            seen.add(vid)
        if off != expect:
            rep.add("bad-version", f"version {vid}: block at offset {off}, expected {expect}")
        expect = off + size
    if last_vid is not None and expect != sizes.get(last_vid):
        rep.add("bad-version", f"version {last_vid}: blocks cover {expect} bytes, size is {sizes.get(last_vid)}")
    for vid, size in sizes.items():
        if vid not in seen and size != 0:
            rep.add("bad-version", f"version {vid}: {size} bytes but no blocks")


def _check_refcounts(s, rep: FsckReport) -> None:
    counted = sa.select(VersionBlock.block_id, sa.func.count().label("n")).group_by(VersionBlock.block_id).subquery()
    q = (sa.select(Block.id, Block.refcount, sa.func.coalesce(counted.c.n, 0))
         .outerjoin(counted, counted.c.block_id == Block.id)
         .where(Block.refcount != sa.func.coalesce(counted.c.n, 0)).limit(1000))
    for bid, stored, actual in s.execute(q):
        rep.add("refcount", f"block {bid.hex()}: refcount {stored}, counted {actual}")
    rep.stats["blocks"] = s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one()


def _check_usage(s, rep: FsckReport, floor: int) -> None:
    used = dict(s.execute(sa.select(Node.owner_id, sa.func.sum(quota.charge_sql(floor)))
                          .join(FileVersion, FileVersion.node_id == Node.id)
                          .group_by(Node.owner_id)).all())
    pending = dict(s.execute(sa.select(UploadSession.user_id, sa.func.sum(UploadSession.reserved_bytes))
                             .where(UploadSession.state == UploadState.ACTIVE).group_by(UploadSession.user_id)).all())
    for uid, email, recorded, held in s.execute(sa.select(User.id, User.email, User.used_bytes, User.pending_bytes)):
        actual = int(used.get(uid) or 0)
        if recorded != actual:
            rep.add("usage", f"user {email}: used_bytes {recorded}, counted {actual}")
        if held != int(pending.get(uid) or 0):
            rep.add("usage", f"user {email}: pending_bytes {held}, counted {int(pending.get(uid) or 0)}")


def _check_tree(s, rep: FsckReport) -> None:
    # Checked one edge at a time: if each node's path is its parent's plus the parent's id,
    # then by induction from the roots every path is exactly its parent chain.
    parent = aliased(Node)
    q = (sa.select(Node.id, Node.parent_id, Node.path, parent.id, parent.path, Node.live_name, Node.live_fold)
         .outerjoin(parent, parent.id == Node.parent_id).order_by(Node.id))
    bad = 0
    for nid, pid, path, found, ppath, live, fold in s.execute(q.execution_options(yield_per=BATCH)):
        rep.stats["nodes"] += 1
        if live is not None:
            _check_name(nid, pid, live, fold, rep)
        if pid is None:
            want = ROOT_PATH
        elif found is None or ppath is None:
            want = None
        else:
            want = child_path(ppath, pid)
        if path != want or path is None:
            bad += 1
            if bad <= 1000:
                rep.add("node-path", f"node {nid}: path {path!r}, its parent chain gives {want!r}")
    owned = dict(s.execute(sa.select(Node.owner_id, sa.func.count()).where(Node.parent_id.is_not(None))
                           .group_by(Node.owner_id)).all())
    for uid, email, recorded in s.execute(sa.select(User.id, User.email, User.node_count)):
        actual = int(owned.get(uid) or 0)
        if recorded != actual:
            rep.add("node-count", f"user {email}: node_count {recorded}, counted {actual}")


def _check_name(nid: int, pid: int, live: str, fold: str | None, rep: FsckReport) -> None:
    """A live name is stored NFC with its case fold. A name without one was kept from before
    names equal under case folding were refused (it clashed with an older one in its folder);
    a rename gives it its fold once that is free."""
    if live != normal(live):
        rep.add("name-form", f"node {nid}: name {live!r} is not in NFC")
    if fold is None:
        rep.add("name-case", f"node {nid}: {live!r} in folder {pid} has no case fold: it was kept from before "
                             "names equal under case folding were refused (rename it, or the older one like it)")
    elif fold != fold_key(live):
        rep.add("name-fold", f"node {nid}: the case fold stored for {live!r} is not its own")


def _check_pack(drive, p: Pack, rep: FsckReport, deep: bool) -> None:
    backend, key = drive.blocks.backend_for(p.url)
    try:
        size = backend.size(key)
    except BlockdriveError as exc:
        rep.add("missing-pack", f"pack {p.id} ({key}): {exc}")
        return
    with drive.sm() as s:
        blocks = s.execute(sa.select(Block.id, Block.size, Block.stored_size, Block.offset_in_pack)
                           .where(Block.pack_id == p.id).order_by(Block.offset_in_pack)).all()
    if p.state == "open":
        end = max((b.offset_in_pack + packfmt.RECORD_HEADER + b.stored_size for b in blocks), default=0)
        if size < end:
            rep.add("pack-size", f"open pack {p.id}: {size} bytes on the backend, records reach {end}")
    elif size != p.size:
        rep.add("pack-size", f"pack {p.id}: {size} bytes on the backend, {p.size} recorded")
    locs = [BlockLocation(b.id, b.size, b.stored_size, p.url, b.offset_in_pack) for b in blocks]
    it = drive.blocks.read_blocks(locs)
    for loc in locs:
        try:
            raw = next(it)
        except BlockdriveError as exc:
            rep.add("corrupt-block", str(exc))
            # the coalesced read failed as a whole: check the rest one by one
            it = _one_by_one(drive, locs[locs.index(loc) + 1:], rep, deep)
            for _ in it:
                pass
            break
        rep.stats["blocks_read"] += 1
        rep.stats["bytes_read"] += loc.stored_size
        if deep and hashlib.sha256(raw).digest() != loc.block_id:
            rep.add("corrupt-block", f"pack {key} offset {loc.offset_in_pack}: SHA-256 does not match "
                                     f"block {loc.block_id.hex()}")


def _one_by_one(drive, locs, rep, deep):
    for loc in locs:
        try:
            raw = next(drive.blocks.read_blocks([loc]))
        except BlockdriveError as exc:
            rep.add("corrupt-block", str(exc))
            continue
        if deep and hashlib.sha256(raw).digest() != loc.block_id:
            rep.add("corrupt-block", f"block {loc.block_id.hex()}: SHA-256 does not match")
        yield raw


def index_from_packs(backend) -> dict[bytes, list[tuple[str, object]]]:
    """Every block record found in the packs of ``backend``: block id -> [(key, Record)].
    Footers are used where present; a pack cut short is scanned record by record."""
    found: dict[bytes, list] = defaultdict(list)
    for key, size in backend.list("packs"):
        if not key.endswith(".pack") or size < packfmt.HEADER_SIZE:
            continue
        tail = backend.read_range(key, max(0, size - packfmt.TRAILER_SIZE), packfmt.TRAILER_SIZE)
        trailer = packfmt.read_trailer(tail)
        records = None
        if trailer is not None:
            entries, icrc, ioff = trailer
            index = backend.read_range(key, ioff, entries * packfmt.INDEX_ENTRY)
            try:
                records = packfmt.parse_index(index, icrc, key)
            except BlockdriveError:
                records = None
        if records is None:
            records = list(packfmt.scan_records(backend.read(key), key))
        for rec in records:
            found[rec.block_id].append((key, rec))
    return found
