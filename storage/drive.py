"""The drive: blockdrive's domain service. Every operation a user can do on their files and
folders, with its permission check and its transaction. No HTTP here: callers pass user ids
and get plain data back; errors are those of :mod:`storage.errors`.

Quota (see :mod:`storage.quota`) is charged for every version the user's files keep: the
current ones, the old ones the retention policy keeps, and those of files in the trash. A new
version of a file therefore costs its whole size: the version it replaces is still kept.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from . import accounts, changes, crashpoints, quota, traffic, tree
from .backends import open_backend
from .blockindex import Ingested, merged_ingests
from .blockstore import BlockLocation, BlockStore
from .chunking import Replay, make_chunker, read_up_to
from .clock import now
from .config import Config
from .db import ReplicaReads, get_row, make_engine, make_sessionmaker, read_only_sessions, rows_by_id, run_tx
from .errors import Conflict, Forbidden, IntegrityError, InvalidInput, LimitExceeded, NotFound, QuotaExceeded
from .groupcommit import Batch, GroupCommitter
from .models import Block, FileVersion, Link, Node, Pack, Share, User, VersionBlock
from .names import fold_key, split_path, validate_name
from .tree import ROLES, NodeInfo, get_node, node_info
from .versions import NewVersion, Ref, check_preconditions, commit_version, version_refs, write_versions
from .states import Role

__all__ = ["ROLES", "SORTS", "Drive", "NodeInfo", "PutResult", "VersionInfo"]
SORTS = ("name", "updated", "size")
READ_PAGE = 256  # version_blocks rows fetched per query while streaming a download
T = TypeVar("T")
# Asked twice by every put: built once, since building it costs more than running it.
_OWNED_BLOCKS = (sa.select(VersionBlock.block_id).distinct()
                 .join(FileVersion, FileVersion.id == VersionBlock.version_id)
                 .join(Node, Node.id == FileVersion.node_id)
                 .where(Node.owner_id == sa.bindparam("uid"),
                        VersionBlock.block_id.in_(sa.bindparam("ids", expanding=True))))


@dataclass(frozen=True)
class VersionInfo:
    id: int
    node_id: int
    size: int
    sha256: str
    created_at: dt.datetime
    created_by: int | None
    current: bool


@dataclass(frozen=True)
class PutResult:
    node: NodeInfo
    version_id: int
    created: bool
    # stored bytes this upload wrote to packs (0 when every block was already the caller's);
    # a block someone else stores is written too, and that copy is dead bytes compact reclaims
    new_bytes: int
    # bytes of the blocks the uploader did not already have in their own files (when the
    # ingest looked them up): what may be told to them (new_bytes would tell whether someone
    # else stores the same content)
    new_to_caller: int = 0


@dataclass(frozen=True)
class _Put:
    """One upload whose bytes are stored, waiting for its commit (:meth:`Drive.put`)."""

    user_id: int
    parent_id: int
    name: str
    if_match: int | str | None
    if_none_match: bool
    ing: Ingested
    mtime: dt.datetime | None
    count_traffic: bool
    had: set[bytes]  # the uploader's own blocks among the upload's


class Drive:
    def __init__(self, config: Config, engine=None):
        self.config = config
        self.engine = engine or make_engine(config.database_url, pool_size=config["database"]["pool_size"])
        self.sm = make_sessionmaker(self.engine)
        self.reads = read_only_sessions(self.sm)  # transactions that only read (see storage/db.py)
        db = config["database"]
        # reads that may go to the replica (listings, reports); everything else reads the primary
        self.replica_reads = ReplicaReads(self.sm, db["replica_url"], db["replica_wait_ms"],
                                          db["replica_retry_seconds"])
        st = config["storage"]
        timeout = st["timeout_seconds"]
        self.blocks = BlockStore(
            self.sm, open_backend(config.storage_url, timeout), make_chunker(st),
            cold=open_backend(config.cold_url, timeout) if config.cold_url else None,
            compression_level=st["compression_level"], min_compression_saving=st["min_compression_saving"],
            pack_max_bytes=st["pack_max_bytes"], timeout=timeout,
            hash_threads=st["ingest_hash_threads"], ingest_buffer_bytes=st["ingest_buffer_bytes"],
            read_location_max_seconds=st["read_location_max_seconds"],
            shared_pack_request_bytes=st["shared_pack_request_bytes"],
            shared_pack_target_bytes=st["shared_pack_target_bytes"],
            shared_pack_idle_seconds=st["shared_pack_idle_seconds"],
            # GC takes an open pack older than the open-pack grace for a crashed one: a live
            # shared pack must be sealed well before that, whatever the two settings say.
            shared_pack_max_age_seconds=min(st["shared_pack_max_age_seconds"],
                                            config["jobs"]["open_pack_grace_seconds"] / 4))
        sec = config["security"]
        self.hasher = accounts.PasswordHasher(sec["scrypt_n"], sec["scrypt_r"], sec["scrypt_p"],
                                              sec["scrypt_concurrency"], sec["scrypt_wait_seconds"])
        self.hooks: dict[str, Callable[[], None]] = self.blocks.hooks
        self.floor = config["quota"]["block_floor_bytes"]
        self.limits = tree.TreeLimits(config)
        # with storage.group_commit, concurrent uploads' commits share a transaction (storage/groupcommit.py);
        # "auto" turns it on where it measured faster: SQLite, whose writers take turns (docs/performance.md)
        grouped = st["group_commit"]
        if grouped == "auto":
            grouped = self.engine.dialect.name == "sqlite"
        self.commits = GroupCommitter(self.sm, st["group_commit_max"]) if grouped else None

    def close(self) -> None:
        self.blocks.close()
        self.replica_reads.close()
        self.engine.dispose()

    # ---- plumbing ----------------------------------------------------------------------

    def tx(self, fn: Callable[[Session], T], attempts: int = 4) -> T:
        """Run ``fn`` in one transaction, retried on the races a retry resolves
        (:func:`storage.db.run_tx`)."""
        return run_tx(self.sm, fn, attempts)

    def _hook(self, name: str) -> None:
        crashpoints.reach(name)
        fn = self.hooks.get(name)
        if fn is not None:
            fn()

    def charge_of(self, size: int, nblocks: int) -> int:
        return quota.version_charge(size, nblocks, self.floor)

    def refuse(self, owner_id: int, needed: int):
        """Raise the QuotaExceeded a charge of ``needed`` bytes would, with the user's split."""
        with self.sm() as s:
            quota.refuse(s, owner_id, needed, self.floor)

    # ---- users -------------------------------------------------------------------------

    def create_user(self, email: str, password: str, premium: bool = False, admin: bool = False) -> tuple[User, str]:
        q = self.config["quota"]
        quota = q["premium_bytes"] if premium else q["free_bytes"]

        def run(s):
            user = accounts.create_user(s, self.hasher, email, password, quota,
                                        "premium" if premium else "free", admin)
            return user, accounts.issue_token(s, user.id, "cli", self.config["security"]["cli_token_ttl_days"])
        return self.tx(run, attempts=1)

    def login(self, email: str, password: str, name: str = "login") -> str:
        """A new token for the right email and password (unthrottled: sign-in doors go
        through :class:`storage.accounts.Accounts`, which throttles)."""
        def run(s):
            user = accounts.authenticate(s, self.hasher, email, password)
            return accounts.issue_token(s, user.id, name, self.config["security"]["token_ttl_days"])
        return self.tx(run, attempts=1)

    def user_for_token(self, token: str) -> User:
        with self.sm() as s, s.begin():
            user, _token_id = accounts.user_for_token(s, token)
            s.expunge(user)
            return user

    def user_by_email(self, email: str) -> User:
        with self.sm() as s:
            user = s.execute(sa.select(User).where(User.email == accounts.normalize_email(email))).scalar_one_or_none()
        if user is None:
            raise NotFound(f"no user {email}")
        return user

    def usage(self, user_id: int) -> quota.Usage:
        """The user's quota split: current files, old versions, trash, pending uploads."""
        with self.sm() as s:
            if s.get(User, user_id) is None:
                raise NotFound(f"user {user_id} not found")
            return quota.usage(s, user_id, self.floor)

    def account(self, user_id: int) -> User:
        with self.sm() as s:
            user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    def set_plan(self, user_id: int, premium: bool) -> None:
        q = self.config["quota"]
        with self.sm() as s, s.begin():
            s.execute(sa.update(User).where(User.id == user_id).values(
                plan="premium" if premium else "free",
                quota_bytes=q["premium_bytes"] if premium else q["free_bytes"]))

    # ---- reading the tree ----------------------------------------------------------------

    def get(self, user_id: int, node_id: int) -> NodeInfo:
        with self.sm() as s:
            node, role = get_node(s, user_id, node_id)
            return node_info(s, node, role)

    def resolve(self, user_id: int, path: str) -> NodeInfo:
        parts = split_path(path)
        with self.sm() as s:
            user = s.get(User, user_id)
            node = s.get(Node, user.root_id)
            for i, name in enumerate(parts):
                node = tree.child(s, node.id, name) if node.kind == "folder" else None
                if node is None:
                    raise NotFound(f"{'/' + '/'.join(parts[:i + 1])} not found")
            return node_info(s, node, Role.OWNER)

    def lookup(self, user_id: int, node_id: int, names: list[str]) -> NodeInfo | None:
        """The node at ``names`` below ``node_id`` (which the caller must be able to see), or
        None when a name is missing or passes through a file. The role is the caller's."""
        with self.sm() as s:
            node, role = get_node(s, user_id, node_id)
            for name in names:
                node = tree.child(s, node.id, name) if node.kind == "folder" else None
                if node is None:
                    return None
            return node_info(s, node, tree.role_of(s, user_id, node) if names else role)

    def list_children(self, user_id: int, folder_id: int, sort: str = "name", desc: bool = False,
                      limit: int = 100, cursor: str | None = None) -> tuple[list[NodeInfo], str | None]:
        """One page of a folder's live children, and the cursor of the next page (or None)."""
        if sort not in SORTS:
            raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        size = sa.func.coalesce(FileVersion.size, -1)
        # Live names are unique in a folder, so by name the (parent_id, live_name) key alone
        # orders and resumes a page: the database walks that index instead of sorting the folder.
        key = {"name": Node.live_name, "updated": Node.updated_at, "size": size}[sort]
        by_id = [] if sort == "name" else [Node.id.desc() if desc else Node.id]
        q = (sa.select(Node, FileVersion).outerjoin(FileVersion, FileVersion.id == Node.current_version_id)
             .where(Node.live_name.is_not(None)))
        if cursor:
            value, last_id = _decode_cursor(cursor, sort)
            after = (key < value) if desc else (key > value)
            q = q.where(after if not by_id else
                        sa.or_(after, sa.and_(key == value, (Node.id < last_id) if desc else (Node.id > last_id))))
        q = q.order_by(key.desc() if desc else key, *by_id).limit(limit + 1)

        def page(sessions) -> tuple[list[NodeInfo], bool]:
            with sessions() as s:
                folder, role = get_node(s, user_id, folder_id)
                if folder.kind != "folder":
                    raise InvalidInput(f"node {folder_id} is not a folder")
                rows = s.execute(q.where(Node.parent_id == folder.id)).all()
                return [tree.info_of(n, v, role) for n, v in rows[:limit]], len(rows) > limit
        # a listing only reads, and may come from the replica once it has caught up
        items, more = self.replica_reads.run(page)
        nxt = None
        if more:
            last = items[-1]
            value = {"name": last.name, "updated": last.updated_at.isoformat(),
                     "size": last.size if last.size is not None else -1}[sort]
            nxt = _encode_cursor(sort, value, last.id)
        return items, nxt

    # ---- changing the tree ---------------------------------------------------------------

    def mkdir(self, user_id: int, parent_id: int, name: str) -> NodeInfo:
        name = validate_name(name)

        def run(s):
            parent, _ = get_node(s, user_id, parent_id, need=Role.EDITOR)
            if parent.kind != "folder":
                raise InvalidInput(f"node {parent_id} is not a folder")
            tree.check_name_free(s, parent.id, name)
            node = self.limits.new_node(s, parent, "folder", name)
            changes.record_node(s, changes.ChangeKind.CREATE, node)
            return node_info(s, node, tree.role_of(s, user_id, node))
        return self._name_tx(run, name)

    def _name_tx(self, run, name: str):
        """A transaction that adds a name to a folder: a unique-key clash that slipped past
        the check (a concurrent request) is a Conflict, not a retry."""
        try:
            return self.tx(run, attempts=1)
        except DBIntegrityError:
            raise Conflict(f"{name!r} already exists in this folder") from None

    def mkdirs(self, user_id: int, path: str) -> NodeInfo:
        """Create every missing folder of ``path`` (like ``mkdir -p``)."""
        node = self.get(user_id, self.account(user_id).root_id)
        for name in split_path(path):
            with self.sm() as s:
                child = tree.child(s, node.id, name)
                info = node_info(s, child, Role.OWNER) if child is not None else None
            if info is None:
                info = self.mkdir(user_id, node.id, name)
            elif info.kind != "folder":
                raise Conflict(f"{name!r} is a file, not a folder")
            node = info
        return node

    def put(self, user_id: int, parent_id: int, name: str, stream: BinaryIO, *,
            if_match: int | str | None = None, if_none_match: bool = False,
            size_hint: int | None = None, on_progress: Callable[[int], None] | None = None,
            mtime: dt.datetime | None = None, anonymous: bool = False,
            count_traffic: bool = False) -> PutResult:
        """Store ``stream`` as ``name`` in folder ``parent_id``: a new file, or a new version
        of the existing one. ``if_match`` (a version id or the content sha256 the caller
        last saw) and ``if_none_match`` (the file must not exist) guard against lost updates;
        ``mtime`` is the file's modification time as the client knows it. ``anonymous``: the
        bytes come from someone acting as ``user_id`` without being them (a file-drop
        link), so no block skips its write. ``count_traffic``: add the upload to the caller's
        access records (storage/traffic.py) in the version's own transaction."""
        name = validate_name(name)
        # A stream shorter than inline_bytes is one block, named by its SHA-256: whether the
        # uploader already has it is asked in the read that checks the folder, not a read of
        # its own. Only an upload that declared so short a size is read first; any other is
        # refused, if it is, before a byte of it is read.
        head = None
        if size_hint is not None and size_hint < self.blocks.inline_bytes:
            head = read_up_to(stream, self.blocks.inline_bytes)
            stream = io.BytesIO(head) if len(head) < self.blocks.inline_bytes else Replay(head, stream)
        one = BlockStore.block_id(head) if head and len(head) < self.blocks.inline_bytes and not anonymous else None
        had: set[bytes] = set()  # the uploader's own blocks among the upload's, as the ingest found them
        with self.reads() as s:
            _parent, _existing, owner = self.put_target(s, user_id, parent_id, name, if_match, if_none_match)
            # The version this one replaces stays (as an old version): it frees nothing.
            limit = max(owner.quota_bytes - owner.used_bytes - owner.pending_bytes, 0)
            owner_id = owner.id
            if one is not None:
                had.update(self._owned_blocks(s, user_id, [one]))
        if size_hint is not None and size_hint > limit:
            self.refuse(owner_id, size_hint)

        def owned(ids: list[bytes]) -> set[bytes]:
            # Only the uploader's own blocks may skip the write: skipping one that someone
            # else stores would answer faster and tell that they store this content. The
            # ingest asks this of every block of the upload, once.
            if anonymous:
                return set()
            if one is not None:
                return had & set(ids)
            with self.reads() as s:
                have = self._owned_blocks(s, user_id, ids)
            had.update(have)
            return have
        try:
            ing = self.blocks.ingest(stream, limit=limit, on_progress=on_progress, owned=owned)
        except QuotaExceeded as exc:
            self.refuse(owner_id, exc.details["needed"])
        self._hook("put:before_commit")
        job = _Put(user_id, parent_id, name, if_match, if_none_match, ing, mtime, count_traffic, had)
        if self.commits is not None:
            result = self.commits.run(lambda s: self._commit_puts(s, [job])[0], key=(owner_id, parent_id),
                                      batch=Batch(self._commit_puts, job))
        else:
            result = self.tx(lambda s: self._commit_puts(s, [job])[0])
        self._hook("put:after_commit")
        return result

    def _commit_puts(self, s: Session, puts: list[_Put]) -> list[PutResult]:
        """Commit ``puts``, whose bytes are stored, in ``s``'s transaction: the one commit path
        of :meth:`put`, for one upload or a group of them (storage/groupcommit.py). Each gets
        the checks :meth:`put_target` makes; their new blocks, quota charges, versions and
        access records are written together, a few statements for the lot. Any error rolls
        back the lot (a group then commits each on its own). Names must differ under case
        folding within a folder."""
        if len({(p.parent_id, fold_key(p.name)) for p in puts}) != len(puts):
            raise Conflict("one name twice in a group of uploads")  # each then commits on its own
        folders: dict[tuple[int, int], Node] = {}
        for p in puts:
            if (p.user_id, p.parent_id) not in folders:
                folder, _ = get_node(s, p.user_id, p.parent_id, need=Role.EDITOR)
                if folder.kind != "folder":
                    raise InvalidInput(f"node {p.parent_id} is not a folder")
                folders[(p.user_id, p.parent_id)] = folder
        names: dict[int, list[str]] = {}
        for p in puts:
            names.setdefault(p.parent_id, []).append(p.name)
        there = {pid: tree.live_children(s, pid, ns) for pid, ns in names.items()}
        new: list[NewVersion] = []
        for p in puts:
            node = there[p.parent_id][p.name]
            if node is not None and node.kind != "file":
                raise Conflict(f"{p.name!r} is a folder")
            if p.if_match is not None or p.if_none_match:
                current = get_row(s, FileVersion, node.current_version_id) \
                    if node is not None and node.current_version_id else None
                check_preconditions(p.name, node, current, p.if_match, p.if_none_match)
            new.append(NewVersion(folders[(p.user_id, p.parent_id)], node, p.name, [Ref(*r) for r in p.ing.refs],
                                  p.ing.size, p.ing.sha256, p.mtime))
        # The new blocks' rows; the refs are the versions', taken by write_versions.
        self.blocks.commit(s, merged_ingests([p.ing for p in puts]))
        charges: Counter = Counter()
        for p, v in zip(puts, new):
            charges[(v.owner_id, p.user_id)] += quota.version_charge(v.size, len(v.refs), self.floor)
        for (owner_id, user_id), delta in sorted(charges.items()):
            quota.settle(s, owner_id, delta, user_id, 0, self.floor)
        made: dict[int, tuple[int, int]] = {}
        for user_id in sorted({p.user_id for p in puts}):
            mine = [i for i, p in enumerate(puts) if p.user_id == user_id]
            made.update(zip(mine, write_versions(s, self.limits, user_id, [new[i] for i in mine])))
        uploads: Counter = Counter()
        bytes_in: Counter = Counter()
        for p in puts:
            if p.count_traffic:
                uploads[p.user_id] += 1
                bytes_in[p.user_id] += p.ing.size
        for user_id in sorted(uploads):
            traffic.add(s, user_id, uploads=uploads[user_id], bytes_in=bytes_in[user_id])
        nodes = {v.node.id: v.node for v in new if v.node is not None}
        nodes.update(rows_by_id(s, Node, [made[i][0] for i, v in enumerate(new) if v.node is None]))
        versions = rows_by_id(s, FileVersion, [vid for _, vid in made.values()])
        out = []
        for i, p in enumerate(puts):
            node_id, vid = made[i]
            node = nodes[node_id]
            out.append(PutResult(tree.info_of(node, versions[vid], tree.role_of(s, p.user_id, node)), vid,
                                 new[i].node is None, p.ing.new_bytes,
                                 sum(n for bid, n in dict(p.ing.refs).items() if bid not in p.had)))
        return out

    @staticmethod
    def _owned_blocks(s: Session, user_id: int, ids: list[bytes]) -> set[bytes]:
        """Of ``ids``, the blocks referenced by a version of one of the user's own files."""
        have: set[bytes] = set()
        for i in range(0, len(ids), 500):
            have.update(r[0] for r in s.execute(_OWNED_BLOCKS, {"uid": user_id, "ids": ids[i:i + 500]}))
        return have

    def put_target(self, s: Session, user_id: int, parent_id: int, name: str, if_match: int | str | None,
                   if_none_match: bool, *, limits: bool = True) -> tuple[Node, Node | None, User | None]:
        """Where a new version of ``name`` in folder ``parent_id`` goes: the folder (the
        caller must be an editor), the file already there (or None) and the folder's owner.
        Checks the preconditions and, for a new file, the owner's tree limits. Inside the
        commit, ``limits=False`` leaves the limits (and the owner, returned as None) to
        :func:`storage.versions.write_versions`, which checks them under the owner's lock."""
        parent, _ = get_node(s, user_id, parent_id, need=Role.EDITOR)
        if parent.kind != "folder":
            raise InvalidInput(f"node {parent_id} is not a folder")
        existing = tree.live_child(s, parent.id, name)
        if existing is not None and existing.kind != "file":
            raise Conflict(f"{name!r} is a folder")
        if if_match is not None or if_none_match:
            current = get_row(s, FileVersion, existing.current_version_id) \
                if existing is not None and existing.current_version_id else None
            check_preconditions(name, existing, current, if_match, if_none_match)
        if not limits:
            return parent, existing, None
        owner = get_row(s, User, parent.owner_id)
        if existing is None:
            # Refused before a byte is read or a resumable upload is opened; the commit checks
            # again under the owner's lock (reserve_nodes, child_path).
            self.limits.check_depth(tree.depth(tree.child_path(tree.node_path(s, parent), parent.id)))
            if owner.node_count + 1 > self.limits.limit("max_nodes_per_user"):
                most = self.limits.limit("max_nodes_per_user")
                raise LimitExceeded(f"a user may own at most {most} files and folders, trash included "
                                    "(limits.max_nodes_per_user)", limit="max_nodes_per_user", max=most)
        return parent, existing, owner

    def move(self, user_id: int, node_id: int, name: str | None = None, parent_id: int | None = None) -> NodeInfo:
        """Rename and/or move a node. No cycles; no moves between different owners' drives."""
        if name is not None:
            name = validate_name(name)

        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.EDITOR)
            if node.parent_id is None:
                raise InvalidInput("the root folder cannot be renamed or moved")
            tree.check_may_remove(s, user_id, node)
            new_parent = node.parent_id if parent_id is None else parent_id
            dest = None
            if new_parent != node.parent_id:
                dest, _ = get_node(s, user_id, new_parent, need=Role.EDITOR)
                if dest.kind != "folder":
                    raise InvalidInput(f"node {new_parent} is not a folder")
                if dest.owner_id != node.owner_id:
                    raise Forbidden("cannot move between different owners' drives; copy instead")
                self._hook("move:before_lock")
                # Two moves that each pass the cycle check on what they read (A into B, B into
                # A) must not both commit: the second waits here for the first, then checks
                # the committed tree.
                tree.lock_owner(s, node.owner_id)
                s.refresh(node)
                s.refresh(dest)
                if node.deleted_at is not None or dest.deleted_at is not None:
                    raise NotFound(f"node {node_id if node.deleted_at is not None else new_parent} not found")
                if node.id == dest.id or node.id in tree.ancestor_ids(s, dest):
                    raise Conflict("cannot move a folder into itself or below itself")
            else:
                # the change feed's lock (changes.record), taken before any node row is
                # written, in the order every other change to the tree takes it
                tree.lock_owner(s, node.owner_id)
            new_name = name if name is not None else node.name
            tree.check_name_free(s, new_parent, new_name, node.id, "the destination folder")
            t = now()
            tree.touch(s, [(node.path, node.id)])  # where it was
            was = dict(old_parent_id=node.parent_id, old_name=node.name, old_path=node.path)
            if dest is not None:
                self.limits.reparent(s, node, dest)
            node.name, node.updated_at = new_name, t
            for column, value in tree.live_columns(new_name).items():
                setattr(node, column, value)
            s.flush()
            tree.touch(s, [(node.path, node.id)])  # where it is
            changes.record_node(s, changes.ChangeKind.MOVE, node, **was)
            return node_info(s, node, tree.role_of(s, user_id, node))
        return self._name_tx(run, name or "the name")

    def copy(self, user_id: int, node_id: int, parent_id: int, name: str | None = None) -> NodeInfo:
        """Copy a file (a new node whose version references the same blocks: no data is
        copied) or a folder, recursively. The destination's owner is charged."""
        if name is not None:
            name = validate_name(name)

        def run(s):
            src, _ = get_node(s, user_id, node_id)
            dest, _ = get_node(s, user_id, parent_id, need=Role.EDITOR)
            if dest.kind != "folder":
                raise InvalidInput(f"node {parent_id} is not a folder")
            if src.id == dest.id or src.id in tree.ancestor_ids(s, dest):
                raise Conflict("cannot copy a folder into itself")
            new_name = name or src.name
            tree.check_name_free(s, dest.id, new_name, where="the destination folder")
            node = self._copy_into(s, user_id, src, dest, new_name)
            return node_info(s, node, tree.role_of(s, user_id, node))
        return self._name_tx(run, name or "the name")

    def _copy_into(self, s: Session, user_id: int, src: Node, dest: Node, name: str) -> Node:
        """Copy ``src`` and its live subtree into ``dest`` as ``name``, in this transaction:
        all of it or, past ``limits.max_nodes_per_copy``, nothing (LimitExceeded before any
        row is written). Parents are copied before their children, in a loop."""
        most = self.limits.limit("max_nodes_per_copy")
        nodes = self._subtree(s, src, limit=most + 1)
        if len(nodes) > most:
            raise LimitExceeded(f"a copy may create at most {most} files and folders (limits.max_nodes_per_copy); "
                                f"node {src.id} holds more", limit="max_nodes_per_copy", max=most)
        base = tree.node_path(s, src)
        self.limits.check_depth(tree.depth(tree.node_path(s, dest)) + 1 + max(tree.depth(n.path or base) for n in nodes)
                         - tree.depth(base))
        self.limits.reserve_nodes(s, dest.owner_id, len(nodes))
        levels: dict[int, list[Node]] = {}
        for n in nodes:
            levels.setdefault(tree.depth(n.path or base), []).append(n)
        made = {src.id: self.limits.new_node(s, dest, src.kind, name, reserved=True)}
        # One level at a time, each one flush: the ORM sends a level's rows as multi-row
        # INSERTs, where a flush per node made a 10,000-node copy hold the write lock for seconds.
        for depth in sorted(levels):
            level = [n for n in levels[depth] if n.id != src.id]
            for n in level:
                parent = made[n.parent_id]
                made[n.id] = self.limits.node_row(parent, n.kind, n.name, tree.child_path(parent.path, parent.id))
            s.add_all([made[n.id] for n in level])
            s.flush()
            changes.record(s, [changes.entry(changes.ChangeKind.CREATE, made[n.id]) for n in levels[depth]])
            for n in levels[depth]:
                node = made[n.id]
                if n.kind == "file" and n.current_version_id:
                    v = s.get(FileVersion, n.current_version_id)
                    commit_version(s, self, user_id, NewVersion(None, node, node.name, version_refs(s, v),
                                                                v.size, v.sha256))
        return made[src.id]

    def _subtree(self, s: Session, root: Node, live: bool = True, limit: int | None = None) -> list[Node]:
        """``root`` and everything below it (live nodes, or those trashed with ``root``), in
        one query over the path index (at most ``limit`` nodes when given)."""
        if live:
            cond = sa.and_(tree.under(Node.path, tree.child_path(tree.node_path(s, root), root.id)),
                           Node.live_name.is_not(None))
        else:
            cond = sa.and_(Node.trashed_with == root.id, Node.id != root.id)
        q = sa.select(Node).where(cond)
        if limit is not None:
            q = q.order_by(Node.id).limit(max(limit - 1, 0))
        return [root, *s.execute(q).scalars().all()]

    def delete(self, user_id: int, node_id: int) -> NodeInfo:
        """Move a node (and everything below it) to its owner's trash."""
        def run(s):
            node, role = get_node(s, user_id, node_id, need=Role.EDITOR)
            if node.parent_id is None:
                raise InvalidInput("the root folder cannot be deleted")
            tree.check_may_remove(s, user_id, node)
            # a folder created or moved into this subtree meanwhile is trashed with it, not left live
            tree.lock_owner(s, node.owner_id)
            t = now()
            ids = [n.id for n in self._subtree(s, node)]
            for i in range(0, len(ids), 500):
                s.execute(sa.update(Node).where(Node.id.in_(ids[i:i + 500]))
                          .values(deleted_at=t, live_name=None, live_fold=None, trashed_with=node.id)
                          .execution_options(synchronize_session=False))
            tree.touch(s, [(node.path, node.id)])
            s.refresh(node)
            changes.record_node(s, changes.ChangeKind.DELETE, node)
            return node_info(s, node, role)
        return self.tx(run)

    def list_trash(self, user_id: int, limit: int | None = None) -> list[NodeInfo]:
        with self.sm() as s:
            nodes = s.execute(sa.select(Node).where(Node.owner_id == user_id, Node.deleted_at.is_not(None),
                                                    Node.trashed_with == Node.id)
                              .order_by(Node.deleted_at.desc(), Node.id).limit(limit)).scalars().all()
            return [node_info(s, n, Role.OWNER) for n in nodes]

    def restore(self, user_id: int, node_id: int) -> NodeInfo:
        """Bring a node back from the trash with everything deleted along with it. If its
        folder is gone it lands in the root; a name now taken gets a " (restored)" suffix."""
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER, trashed=True)
            if node.trashed_with != node.id:
                raise InvalidInput(f"node {node_id} was deleted with its folder; restore that folder")
            # its folder may have moved (deeper) or gone since it was deleted: the paths below
            # follow, within the depth limit, against the committed tree
            tree.lock_owner(s, node.owner_id)
            s.refresh(node)
            if node.deleted_at is None:
                raise NotFound(f"node {node_id} not found")
            parent = s.get(Node, node.parent_id, populate_existing=True)
            if parent is None or parent.deleted_at is not None:
                parent = s.get(Node, s.get(User, node.owner_id).root_id)
            name, n = node.name, 1
            while tree.clashes(s, {(parent.id, name)}):
                stem, dot, ext = node.name.rpartition(".")
                suffix = " (restored)" if n == 1 else f" (restored {n})"
                name = f"{stem}{suffix}.{ext}" if dot and stem else f"{node.name}{suffix}"
                n += 1
            validate_name(name)
            self.limits.reparent(s, node, parent)
            members = s.execute(sa.select(Node).where(Node.trashed_with == node.id)).scalars().all()
            # The only live names in a restored folder are those restored with it. Names that
            # clashed under case folding before the rule come back as they were: the first
            # with its fold, the others without (see Node).
            folds: set[tuple[int | None, str]] = set()
            for m in sorted(members, key=lambda m: m.id):
                live = tree.live_columns(m.name if m.id != node.id else name)
                if (m.parent_id, live["live_fold"]) in folds:
                    live["live_fold"] = None
                folds.add((m.parent_id, live["live_fold"]))
                m.deleted_at, m.trashed_with, m.live_name, m.live_fold = None, None, live["live_name"], live["live_fold"]
            node.name = name
            s.flush()
            tree.touch(s, [(node.path, node.id)])
            changes.record_node(s, changes.ChangeKind.RESTORE, node)
            return node_info(s, node, Role.OWNER)
        return self.tx(run)

    def purge(self, user_id: int, node_id: int) -> int:
        """Delete a trashed node and everything deleted with it for good. Returns the number
        of versions removed. Refcounts drop in the same transaction; the blocks themselves
        are left to GC."""
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER, trashed=True)
            if node.trashed_with != node.id:
                raise InvalidInput(f"node {node_id} was deleted with its folder; purge that folder")
            return self._purge(s, node)
        return self.tx(run)

    def _purge(self, s: Session, node: Node) -> int:
        members = s.execute(sa.select(Node).where(Node.trashed_with == node.id)).scalars().all()
        ids = [m.id for m in members]
        versions = []
        for i in range(0, len(ids), 500):
            versions += [tuple(r) for r in s.execute(
                sa.select(FileVersion.id, FileVersion.size, FileVersion.nblocks)
                .where(FileVersion.node_id.in_(ids[i:i + 500])))]
        # The change feed: the purge, then a share lost by each grantee of what goes (one
        # record: the grantees' rows are locked in id order, after the owner's)
        changes.record_node(s, changes.ChangeKind.PURGE, node)
        lost = []
        for i in range(0, len(ids), 500):
            lost += s.execute(sa.select(Share.node_id, Share.grantee_id).where(Share.node_id.in_(ids[i:i + 500]))).all()
        changes.record(s, [changes.node_entry(s, changes.ChangeKind.SHARE_LOST, s.get(Node, nid), user_id=grantee_id)
                           for nid, grantee_id in lost])
        # Nothing may point at a version when it goes: the nodes let go of theirs first.
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            s.execute(sa.update(Node).where(Node.id.in_(chunk)).values(current_version_id=None, parent_id=None)
                      .execution_options(synchronize_session=False))
            s.execute(sa.delete(Share).where(Share.node_id.in_(chunk)))
            s.execute(sa.delete(Link).where(Link.node_id.in_(chunk)))
        quota.drop_versions(s, node.owner_id, versions, self.floor)
        for i in range(0, len(ids), 500):
            s.execute(sa.delete(Node).where(Node.id.in_(ids[i:i + 500])).execution_options(synchronize_session=False))
        self.limits.reserve_nodes(s, node.owner_id, -len(ids))
        return len(versions)

    def empty_trash(self, user_id: int, limit: int = 1000) -> tuple[int, int]:
        """Purge up to ``limit`` of the user's trash entries, one transaction each (a
        request cut off midway leaves whole entries purged or kept). Returns the entries and
        the versions removed."""
        with self.sm() as s:
            ids = s.execute(sa.select(Node.id).where(Node.owner_id == user_id, Node.deleted_at.is_not(None),
                                                     Node.trashed_with == Node.id).limit(limit)).scalars().all()
        entries = versions = 0
        for nid in ids:
            def run(s, nid=nid):
                node = s.get(Node, nid)
                if node is None or node.trashed_with != nid or node.owner_id != user_id:
                    return None  # purged or restored meanwhile
                return self._purge(s, node)
            n = self.tx(run)
            if n is not None:
                entries, versions = entries + 1, versions + n
        return entries, versions

    def purge_expired_trash(self, older_than: dt.datetime, limit: int = 1000) -> int:
        """Purge trash entries deleted before ``older_than``, one transaction each."""
        with self.sm() as s:
            ids = s.execute(sa.select(Node.id).where(Node.deleted_at < older_than, Node.trashed_with == Node.id)
                            .limit(limit)).scalars().all()
        for nid in ids:
            def run(s, nid=nid):
                node = s.get(Node, nid)
                return self._purge(s, node) if node is not None and node.trashed_with == nid else 0
            self.tx(run)
        return len(ids)

    # ---- versions and content ------------------------------------------------------------

    def versions(self, user_id: int, node_id: int) -> list[VersionInfo]:
        with self.sm() as s:
            node, _ = get_node(s, user_id, node_id)
            rows = s.execute(sa.select(FileVersion).where(FileVersion.node_id == node.id)
                             .order_by(FileVersion.id.desc())).scalars().all()
            return [VersionInfo(v.id, v.node_id, v.size, v.sha256.hex(), v.created_at, v.created_by,
                                v.id == node.current_version_id) for v in rows]

    def restore_version(self, user_id: int, node_id: int, version_id: int) -> PutResult:
        """Make an old version current again, as a new version with the same blocks."""
        def run(s):
            node, role = get_node(s, user_id, node_id, need=Role.EDITOR)
            old = s.get(FileVersion, version_id)
            if old is None or old.node_id != node.id:
                raise NotFound(f"version {version_id} not found")
            # A new version: the one it replaces and the one it copies both stay.
            _, vid = commit_version(s, self, user_id, NewVersion(None, node, node.name, version_refs(s, old),
                                                                 old.size, old.sha256))
            return PutResult(node_info(s, node, role), vid, False, 0)
        return self.tx(run)

    def purge_version(self, user_id: int, node_id: int, version_id: int) -> int:
        """Delete one old version of a file for good (the owner frees its quota at once
        instead of waiting for the retention policy). The current version cannot be purged:
        delete the file instead. Returns the bytes freed."""
        def run(s):
            node, _ = get_node(s, user_id, node_id, need=Role.OWNER)
            v = s.get(FileVersion, version_id) if isinstance(version_id, int) else None
            if v is None or v.node_id != node.id:
                raise NotFound(f"version {version_id} not found")
            if v.id == node.current_version_id:
                raise Conflict("the current version cannot be purged; delete the file or restore another version")
            return quota.drop_versions(s, node.owner_id, [(v.id, v.size, v.nblocks)], self.floor)
        return self.tx(run)

    def file_version(self, s: Session, user_id: int, node_id: int,
                      version_id: int | None) -> tuple[Node, str, FileVersion]:
        """A file node the caller may read, their role, and its version ``version_id`` (the
        current one if None)."""
        node, role = get_node(s, user_id, node_id)
        if node.kind != "file":
            raise InvalidInput(f"node {node_id} is a folder")
        vid = version_id or node.current_version_id
        v = s.get(FileVersion, vid) if vid else None
        if v is None or v.node_id != node.id:
            raise NotFound(f"version {version_id} not found")
        return node, role, v

    def open(self, user_id: int, node_id: int, version_id: int | None = None,
             start: int = 0, end: int | None = None) -> tuple[NodeInfo, VersionInfo, Iterator[bytes]]:
        """The node, the version and an iterator over bytes ``[start, end)`` of it."""
        with self.sm() as s:
            node, role, v = self.file_version(s, user_id, node_id, version_id)
            info = node_info(s, node, role)
            vinfo = VersionInfo(v.id, v.node_id, v.size, v.sha256.hex(), v.created_at, v.created_by,
                                v.id == node.current_version_id)
        end = v.size if end is None else min(end, v.size)
        if start < 0 or start > end:
            raise InvalidInput(f"bad byte range {start}-{end} for a file of {v.size} bytes")
        return info, vinfo, self.stream_version(v.id, start, end)

    def stream_version(self, version_id: int, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of a version, a page of block rows at a time. No session is
        held between pages; a pack moved meanwhile stays readable for the grace period."""
        last_seq = -1
        while start < end:
            with self.sm() as s:
                rows = s.execute(
                    sa.select(VersionBlock.seq, VersionBlock.offset, VersionBlock.block_id, Block.size,
                              Block.stored_size, Pack.url, Block.offset_in_pack)
                    .outerjoin(Block, Block.id == VersionBlock.block_id)
                    .outerjoin(Pack, Pack.id == Block.pack_id)
                    .where(VersionBlock.version_id == version_id, VersionBlock.seq > last_seq,
                           VersionBlock.offset < end,
                           sa.or_(Block.size.is_(None), VersionBlock.offset + Block.size > start))
                    .order_by(VersionBlock.seq).limit(READ_PAGE)).all()
            if not rows:
                raise IntegrityError(f"version {version_id} has no blocks for bytes {start}-{end}")
            for r in rows:
                if r.size is None or r.url is None:
                    raise IntegrityError(f"version {version_id} refers to missing block {r.block_id.hex()}",
                                         block=r.block_id.hex())
            locs = [BlockLocation(r.block_id, r.size, r.stored_size, r.url, r.offset_in_pack) for r in rows]
            for r, raw in zip(rows, self.blocks.read_blocks(locs)):
                lo, hi = max(start - r.offset, 0), min(end - r.offset, r.size)
                if r.offset + lo != start:
                    raise IntegrityError(f"version {version_id}: blocks do not tile at byte {start}")
                yield raw[lo:hi] if (lo, hi) != (0, r.size) else raw
                start = r.offset + hi
            last_seq = rows[-1].seq


def _encode_cursor(sort: str, value, node_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort, value, node_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str):
    """A listing's own ``next_cursor`` back into (value, node id). A cursor travels through
    the client, so anything else is refused: each part must have the type and range the
    query compares it with (a list, an object or 2^70 reached the database as a 500)."""
    max_id = 2**63 - 1  # ids and sizes are signed 64-bit in the database
    try:
        if not isinstance(cursor, str) or len(cursor) > 4096:
            raise ValueError
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(decoded, list) or len(decoded) != 3:
            raise ValueError
        s, value, node_id = decoded
        if s != sort or type(node_id) is not int or not 1 <= node_id <= max_id:
            raise ValueError
        if sort == "name":
            if not isinstance(value, str):
                raise ValueError
            value.encode("utf-8")  # a lone surrogate cannot reach the database (ValueError)
        if sort == "size" and (type(value) is not int or not -1 <= value <= max_id):
            raise ValueError
        if sort == "updated":
            if not isinstance(value, str):
                raise ValueError
            value = dt.datetime.fromisoformat(value)
            if value.tzinfo is not None:  # the column holds naive UTC
                raise ValueError
        return value, node_id
    except (ValueError, TypeError, RecursionError):
        raise InvalidInput("invalid cursor (it belongs to another listing or sort order)") from None
