"""Batched block API for clients that sync many files: many blocks in one request, many
commits in one transaction, folders one tree level at a time, and a version's block map.

The single-file block API (:class:`storage.uploads.Uploads`) costs a few round trips and one
durable transaction per file; a tree of 10,000 small files then spends its time in fsyncs and
latency. These functions reuse its rules unchanged:

- a batch of blocks is verified block by block against its hash, written to one pack and
  pinned in the caller's block session, exactly like ``put_block`` for each;
- a batch of commits is one transaction (one fsync), but every file keeps its own checks
  (editor rights, If-Match / If-None-Match, blocks usable by the caller, size and content
  hash): a file that fails them is reported and left out, the others land. Quota is charged
  for the batch as a whole; when that does not fit, the batch is charged again file by file
  in order, and the files that do not fit are refused (``quota-exceeded``) while the others
  land.
- a single-block file's content hash *is* its block id, so it is verified without reading
  the block back; larger files are hashed from the stored blocks as ``commit_blocks`` does.

The block map of a version (hash, offset, size of each block) lets a client fetch only the
ranges its local copy lacks. It is shown to whoever may read the file: they could compute
it from the content, and it grants nothing (``missing`` and commits count only blocks the
caller owns or sent).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from . import changes, quota
from .blockindex import Ingested
from .clock import now
from .errors import BlockdriveError, Conflict, ContentMismatch, InvalidInput, QuotaExceeded
from .models import Block, FileVersion, Node, User, VersionBlock
from .names import fold_key, validate_name
from .tree import clashes, get_node, live_columns, name_taken, touch
from .uploads import Uploads
from .wire import FRAME, MAX_BATCH_BLOCKS, MAX_BATCH_FILES, MAX_BATCH_FOLDERS
from .versions import NewVersion, Ref, check_preconditions, insert_rows, new_node_paths, write_versions
from .states import Role

MAX_BATCH_BYTES = 32 * 1024 * 1024  # per request (a single larger block may still come alone)
EMPTY_SHA = hashlib.sha256(b"").digest()


@dataclass(frozen=True)
class FileEntry:
    """One file of a batch commit: its folder and name, its blocks in order, its size and
    content SHA-256, and the preconditions (``if_match``: a version id or content hash the
    current version must have; ``if_none_match``: only if no file has that name)."""

    parent_id: int
    name: str
    blocks: list[bytes]
    size: int
    sha256: bytes
    if_match: str | None = None
    if_none_match: bool = False


@dataclass(frozen=True)
class FolderEntry:
    """One folder of a batch of folders: created in ``parent_id`` unless there already."""

    parent_id: int
    name: str


@dataclass(frozen=True)
class Folder:
    id: int
    name: str
    parent_id: int
    created: bool  # False: the folder was there already (or came earlier in the batch)


@dataclass(frozen=True)
class BlocksResult:
    """What a batch of blocks was. Whether the server already had some of them from another
    user is deliberately not told (that would confirm someone stores a given content)."""

    received: int        # blocks in the request
    received_bytes: int  # their raw bytes


@dataclass(frozen=True)
class Committed:
    id: int
    name: str
    parent_id: int
    version_id: int
    size: int
    sha256: str
    created: bool


@dataclass(frozen=True)
class PlannedFile:
    """A file a client means to send and commit: its size, its number of blocks, and the
    folder it goes to (None: the caller's own drive), whose owner its version is charged to."""

    size: int
    nblocks: int
    parent_id: int | None = None


def check_room(up: Uploads, user_id: int, files: list[PlannedFile], sent: Sequence[bytes] = ()) -> None:
    """Raise :class:`QuotaExceeded` (with ``available``) when ``files`` cannot fit in the quota
    of whom they would be charged to, so a client learns it before sending a block. What the
    caller's block session already holds for the blocks ``sent`` counts as room (it turns
    into the versions' charge). The commit checks again, exactly: this only saves the sending."""
    needs: Counter = Counter()
    with up.drive.sm() as s:
        for f in files:
            owner = user_id if f.parent_id is None else \
                get_node(s, user_id, f.parent_id, need=Role.EDITOR)[0].owner_id
            needs[owner] += up.drive.charge_of(f.size, f.nblocks)
        held = up.pinned_charge(s, f"blocks-{user_id}", sent) if sent else 0
        for owner, need in sorted(needs.items()):
            u = s.execute(sa.select(User.quota_bytes, User.used_bytes, User.pending_bytes)
                          .where(User.id == owner)).one()
            room = u.quota_bytes - u.used_bytes - u.pending_bytes + (held if owner == user_id else 0)
            if need > room:
                try:
                    quota.refuse(s, owner, need, up.floor)
                except QuotaExceeded as exc:
                    exc.details["available"] = max(room, 0)
                    raise


def _frames(data, max_block: int) -> list[tuple[bytes, memoryview]]:
    """The ``(block id, raw bytes)`` frames of a request body, each checked against its hash.
    Raises on the first bad frame, before anything is stored."""
    view = memoryview(data)
    out: list[tuple[bytes, memoryview]] = []
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < FRAME.size:
            raise InvalidInput("truncated block frame header")
        bid, n = FRAME.unpack_from(view, pos)
        pos += FRAME.size
        if n > max_block:
            raise InvalidInput(f"a block is at most {max_block} bytes", block=bid.hex())
        if end - pos < n:
            raise InvalidInput("truncated block", block=bid.hex())
        raw = view[pos:pos + n]
        pos += n
        if hashlib.sha256(raw).digest() != bid:
            raise ContentMismatch("a block's bytes do not hash to its name", block=bid.hex())
        if len(out) >= MAX_BATCH_BLOCKS:
            raise InvalidInput(f"at most {MAX_BATCH_BLOCKS} blocks per request")
        out.append((bid, raw))
    return out


def put_blocks(up: Uploads, user_id: int, data) -> BlocksResult:
    """Store the framed blocks of the request body ``data`` (``FRAME`` header, then the raw
    bytes, repeated) and pin them in the caller's block session. All or nothing: a bad frame
    or hash fails the request before anything is stored; a failure after that leaves only
    pack bytes that GC reclaims.

    The body is whole in memory (bounded by ``MAX_BATCH_BYTES``), so its blocks are checked
    first, then looked up with one query per 500 (not one per 64 as a stream is), then the
    new ones are compressed and appended to one pack."""
    store = up.store
    frames = _frames(data, store.chunker.max_size)
    sizes = {bid: len(raw) for bid, raw in frames}
    up.room_check(user_id, sum(quota.block_charge(n, up.floor) for n in sizes.values()))
    ing = Ingested()
    sink = store.writer(ing)

    def usable(block_ids: list[bytes]) -> set[bytes]:
        with up.drive.sm() as s:
            return up.usable(s, user_id, block_ids)
    try:
        # Only blocks the caller already has may skip the write (see Uploads.put_block: any
        # other is written, so the time taken tells nothing of other users' content). No
        # pack row is reserved before the lookup: a block skipped here is the caller's own
        # (refs or pins), and if it vanished anyway the pin in the commit fails and is retried.
        sink.add_chunks(frames, usable)
        sink.close()
    except BaseException:
        sink.abandon()
        raise
    ids = {b for b, _ in frames}

    def run(s):
        us = up.block_session(s, user_id)
        us.expires_at = up.block_expiry(us.created_at, now())
        store.commit(s, ing)
        up.hold_blocks(s, us, ids, sizes)
    up.drive.tx(run)
    return BlocksResult(len(frames), sum(len(r) for _, r in frames))


def _live_children(s, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Node]:
    """The live nodes named by ``(folder id, name)`` keys, a query per 500 folders and 500
    names (a superset, filtered here) rather than one per key."""
    pids = sorted({p for p, _ in keys})
    names = sorted({n for _, n in keys})
    out: dict[tuple[int, str], Node] = {}
    for i in range(0, len(pids), 500):
        for j in range(0, len(names), 500):
            for n in s.execute(sa.select(Node).where(Node.parent_id.in_(pids[i:i + 500]),
                                                     Node.live_name.in_(names[j:j + 500]))).scalars():
                if (n.parent_id, n.live_name) in keys:
                    out[(n.parent_id, n.live_name)] = n
    return out


def _sizes(s, ids: list[bytes]) -> dict[bytes, int]:
    """The raw size of each stored block of ``ids``, 500 to a query."""
    out: dict[bytes, int] = {}
    for i in range(0, len(ids), 500):
        out.update((bid, n) for bid, n in s.execute(sa.select(Block.id, Block.size).where(
            Block.id.in_(ids[i:i + 500]))))
    return out


def commit_many(up: Uploads, user_id: int, files: list[FileEntry]) -> list[Committed | BlockdriveError]:
    """Commit each of ``files`` as a new file or version, in one transaction. Returns one
    result per file, in order: what was committed, or the domain error that kept it out."""
    if len(files) > MAX_BATCH_FILES:
        raise InvalidInput(f"files must be a list of at most {MAX_BATCH_FILES} objects")
    d = up.drive
    results: list[Committed | BlockdriveError | None] = [None] * len(files)
    parsed = {}
    for i, e in enumerate(files):
        try:
            parsed[i] = (e.parent_id, validate_name(e.name), e.blocks, e.size, e.sha256, e.if_match,
                         e.if_none_match)
        except BlockdriveError as exc:
            results[i] = exc
    # What the caller may build on, and the blocks' sizes, in a few queries for the batch.
    every = [b for p in parsed.values() for b in p[2]]
    with d.sm() as s:
        usable = up.usable(s, user_id, every)
        sizes = _sizes(s, [b for b in set(every) if b in usable])
    checked = {}
    for i, (parent_id, name, ids, size, sha, if_match, inm) in parsed.items():
        try:
            lacking = [b.hex() for b in ids if b not in usable or b not in sizes]
            if lacking:
                raise InvalidInput(f"{len(lacking)} block(s) not sent yet", missing=len(lacking), first=lacking[0])
            if sum(sizes[b] for b in ids) != size:
                raise ContentMismatch(f"the blocks hold {sum(sizes[b] for b in ids)} bytes, not {size}")
            # One block: its id is the SHA-256 of the whole content. No blocks: the empty file.
            same = (ids == [sha]) if len(ids) == 1 else (sha == EMPTY_SHA if not ids else None)
            if same is None:
                same = up.hash_blocks(ids) == sha
            if not same:
                raise ContentMismatch("the blocks' content does not hash to the given sha256")
            checked[i] = (parent_id, name, ids, size, sha, if_match, inm)
        except BlockdriveError as exc:
            results[i] = exc

    def run(s, each: bool = False):
        out: dict[int, Committed | BlockdriveError] = {}
        parents: dict[int, Node] = {}
        # The existing files of every (folder, name) in the batch, and their current versions,
        # in a few queries rather than two per file.
        existing = _live_children(s, {(parent_id, name) for parent_id, name, *_ in checked.values()})
        vids = [n.current_version_id for n in existing.values() if n.current_version_id]
        current: dict[int, FileVersion] = {}
        for j in range(0, len(vids), 500):
            current.update((v.id, v) for v in s.execute(sa.select(FileVersion).where(
                FileVersion.id.in_(vids[j:j + 500]))).scalars())
        # New names that meet a live name of another case (or one kept without a fold)
        clash = clashes(s, {(parent_id, name) for parent_id, name, *_ in checked.values()
                            if (parent_id, name) not in existing})
        taken: dict[tuple[int, str], str] = {}  # (folder, fold key) -> the name this batch puts there
        charge: Counter = Counter()
        todo: list[tuple[int, NewVersion]] = []
        for i, (parent_id, name, ids, size, sha, if_match, inm) in checked.items():
            try:
                twin = taken.get((parent_id, fold_key(name)))
                if twin is not None:
                    raise Conflict(f"{name!r} appears twice in this batch" if twin == name else
                                   f"{name!r} and {twin!r} in this batch differ only in case: one folder cannot "
                                   "hold both (Windows and macOS would see one file)", clashes_with=twin)
                if parent_id not in parents:
                    parents[parent_id] = get_node(s, user_id, parent_id, need=Role.EDITOR)[0]
                parent = parents[parent_id]
                if parent.kind != "folder":
                    raise InvalidInput(f"node {parent_id} is not a folder")
                node = existing.get((parent_id, name))
                if node is not None and node.kind != "file":
                    raise Conflict(f"{name!r} is a folder")
                if (parent_id, name) in clash:
                    raise name_taken(name, clash[(parent_id, name)])
                cur = current.get(node.current_version_id) if node is not None else None
                check_preconditions(name, node, cur, if_match, inm)
                taken[(parent_id, fold_key(name))] = name
                # The version this one replaces stays (as an old version): it frees nothing.
                charge[parent.owner_id] += d.charge_of(size, len(ids))
                todo.append((i, NewVersion(parent, node, name, [Ref(b, sizes[b]) for b in ids], size, sha)))
            except BlockdriveError as exc:
                out[i] = exc
        if not todo:
            return out
        if each:
            todo = _charge_each(s, up, user_id, todo, out)
            if not todo:
                return out
        else:
            # The session's pins have done their job for what is committed: refs keep it now.
            # Its pending bytes go back before the versions are charged, in this transaction.
            held = up.unpin(s, f"blocks-{user_id}", {r.block_id for _, v in todo for r in v.refs})
            quota.release(s, user_id, held)
            for owner_id, delta in charge.items():
                quota.charge(s, owner_id, delta, floor=d.floor)  # QuotaExceeded: retried file by file
        # LimitExceeded or PreconditionFailed: the whole batch rolls back
        written = write_versions(s, d.limits, user_id, [v for _, v in todo])
        for (i, v), (node_id, version_id) in zip(todo, written):
            out[i] = Committed(node_id, v.name, v.parent.id, version_id, v.size, v.sha256.hex(), v.node is None)
        return out

    if checked:
        try:
            try:
                done = d.tx(run)
            except QuotaExceeded:
                # Rolled back whole: again, charging file by file, so those that fit land.
                done = d.tx(lambda s: run(s, each=True))
        except DBIntegrityError:
            raise Conflict("a name in this batch was taken concurrently; retry the batch") from None
        for i, r in done.items():
            results[i] = r
    return results  # type: ignore[return-value]


def _charge_each(s, up: Uploads, user_id: int, todo: list[tuple[int, NewVersion]],
                 out: dict) -> list[tuple[int, NewVersion]]:
    """Charge the versions of ``todo`` one at a time, in order: a version that does not fit
    its owner's quota is refused (its :class:`QuotaExceeded` goes in ``out``, its blocks stay
    pinned for a retry), the others are charged. Returns those that were."""
    sid = f"blocks-{user_id}"
    kept = []
    for i, v in todo:
        ids = {r.block_id for r in v.refs}
        held = up.pinned_charge(s, sid, ids)
        owner = v.parent.owner_id
        cost = up.drive.charge_of(v.size, len(v.refs))
        try:
            # A guarded UPDATE: a refusal changes nothing, so the transaction goes on.
            if owner == user_id:
                quota.charge(s, owner, cost, release=held, floor=up.floor)
            else:
                quota.charge(s, owner, cost, floor=up.floor)
        except QuotaExceeded as exc:
            out[i] = exc
            continue
        up.unpin(s, sid, ids)
        if owner != user_id:
            quota.release(s, user_id, held)
        kept.append((i, v))
    return kept


def make_folders(drive, user_id: int, folders: list[FolderEntry]) -> list[Folder | BlockdriveError]:
    """Create each folder unless a folder of that name is there already (``mkdir -p`` for
    one level), in one transaction. Returns, per entry, the folder or the domain error that
    kept it out. The existing names are looked up and the new folders inserted a batch at a
    time, not one statement per folder."""
    if len(folders) > MAX_BATCH_FOLDERS:
        raise InvalidInput(f"folders must be a list of at most {MAX_BATCH_FOLDERS} objects")

    def run(s):
        out: list[Folder | BlockdriveError | None] = [None] * len(folders)
        parents: dict[int, Node] = {}
        want: dict[int, tuple[Node, str]] = {}
        for i, e in enumerate(folders):
            try:
                pid = e.parent_id
                name = validate_name(e.name)
                if pid not in parents:
                    parents[pid] = get_node(s, user_id, pid, need=Role.EDITOR)[0]
                parent = parents[pid]
                if parent.kind != "folder":
                    raise InvalidInput(f"node {pid} is not a folder")
                want[i] = (parent, name)
            except BlockdriveError as exc:
                out[i] = exc
        existing = {k: (n.id, n.kind) for k, n in _live_children(
            s, {(p.id, name) for p, name in want.values()}).items()}
        new = {(p.id, name): p for p, name in want.values() if (p.id, name) not in existing}
        # A new name meeting a live one of another case, or another new one of this batch
        # (the first entry keeps it), is refused alone.
        refused = {k: name_taken(k[1], other) for k, other in clashes(s, set(new)).items()}
        firsts: dict[tuple[int, str], str] = {}
        for pid, name in list(new):
            first = firsts.setdefault((pid, fold_key(name)), name)
            if first != name:
                refused[(pid, name)] = name_taken(name, first, "this batch")
        for k in refused:
            del new[k]
        paths = new_node_paths(drive.limits, s, list(new.values()))  # LimitExceeded: the whole batch rolls back
        t = now()
        ids = insert_rows(s, Node, [dict(owner_id=p.owner_id, parent_id=pid, kind="folder", name=name, **live_columns(name),
                                     path=paths[pid], created_at=t, updated_at=t) for (pid, name), p in new.items()],
                      ("parent_id", "live_name"))
        touch(s, [(paths[pid], nid) for (pid, _name), nid in zip(new, ids)])
        changes.record(s, [changes.created(nid, "folder", p, name, paths[pid])
                           for ((pid, name), p), nid in zip(new.items(), ids)])
        existing.update((k, (nid, "folder")) for k, nid in zip(new, ids))
        reported: set[tuple[int, str]] = set()
        for i, (parent, name) in want.items():
            key = (parent.id, name)
            if key in refused:
                out[i] = refused[key]
                continue
            nid, kind = existing[key]
            if kind != "folder":
                out[i] = Conflict(f"{name!r} is a file")
                continue
            # created: the first entry naming a new folder (a repeat in the batch finds it)
            out[i] = Folder(nid, name, parent.id, key in new and key not in reported)
            reported.add(key)
        return out
    try:
        return drive.tx(run, attempts=1)
    except DBIntegrityError:
        raise Conflict("a folder name in this batch was taken concurrently; retry the batch") from None


def block_map(drive, user_id: int, node_id: int, version_id: int | None = None) -> dict:
    """A file version's blocks in order: ``[sha256 hex, offset, size]`` each, with the
    version's id, size and content hash."""
    with drive.sm() as s:
        node, _, v = drive.file_version(s, user_id, node_id, version_id)
        rows = s.execute(sa.select(VersionBlock.block_id, VersionBlock.offset, Block.size)
                         .join(Block, Block.id == VersionBlock.block_id)
                         .where(VersionBlock.version_id == v.id).order_by(VersionBlock.seq)).all()
        return {"node_id": node.id, "version_id": v.id, "size": v.size, "sha256": v.sha256.hex(),
                "blocks": [[b.hex(), off, n] for b, off, n in rows]}


MAX_TREE = 100_000


def tree(drive, user_id: int, node_id: int, limit: int = MAX_TREE) -> dict:
    """Every live node below a folder (not the folder itself), parents before children, as
    ``{id, parent_id, kind, name, size, sha256}``: what a sync client compares its local tree
    with, in one request instead of one per folder. Past ``limit`` nodes the answer is cut
    short and says so (``truncated``); the client then lists folder by folder."""
    with drive.sm() as s:
        root, _ = get_node(s, user_id, node_id)
        if root.kind != "folder":
            raise InvalidInput(f"node {node_id} is not a folder")
        items, frontier = [], [root.id]
        while frontier and len(items) < limit:
            part, frontier = frontier[:500], frontier[500:]
            rows = s.execute(sa.select(Node.id, Node.parent_id, Node.kind, Node.name, FileVersion.size,
                                       FileVersion.sha256)
                             .outerjoin(FileVersion, FileVersion.id == Node.current_version_id)
                             .where(Node.parent_id.in_(part), Node.live_name.is_not(None))
                             .order_by(Node.id)).all()
            for nid, pid, kind, name, size, sha in rows:
                items.append({"id": nid, "parent_id": pid, "kind": kind, "name": name,
                              "size": size if kind == "file" else None, "sha256": sha.hex() if sha else None})
                if kind == "folder":
                    frontier.append(nid)
        truncated = len(items) > limit or bool(frontier)
        return {"node_id": root.id, "items": items[:limit], "truncated": truncated}
