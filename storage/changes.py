"""The change feed: what changed in a user's files, and in what was shared with them, read by
cursor.

The journal (table ``changes``) holds one row per change, in the *journal* of the user it
belongs to: a change to a tree goes in its owner's journal (whoever made it), a share gained
or lost in the grantee's. A change inside a shared folder is written once, however many
people it is shared with: a reader follows their own journal and the journals of the owners
whose folders they hold a share on, keeping from those only the rows whose node is a shared
folder or lies below one (its ``path`` names the folder's id; see :mod:`storage.tree`).

Order. Every write to a journal first locks the row of the journal's user (the lock
:func:`storage.tree.lock_owner` takes) and holds it until commit, so within one journal the
sequence numbers are in commit order: a reader that has seen sequence ``n`` of a journal will
never later find one below ``n`` there. A cursor therefore keeps one position per journal it
follows. Granting a share locks the owner's row before the grantee's, so the owner's entries
below the grant's sequence number all committed before it and those above after it: the
grantee's view of the shared folder starts exactly at the grant.

What a grantee sees of a move: a node moved into a shared folder appears as ``create``, one
moved out of it as ``delete`` (showing where it was, never where it went).

Entries are pruned after ``changes.retention_days`` (:meth:`ChangeFeed.prune`, run by the gc
job); each journal remembers how far it was pruned (``change_horizons``), and a cursor behind
that raises :class:`CursorExpired`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .db import execute_core
from .errors import Gone
from .models import Change, FileVersion, Node, Share, User
from .models.changes import ChangeHorizon
from .tree import ROLES, NodeInfo, lock_owner

MAX_PAGE = 1000
CURSOR_VERSION = 1


class ChangeKind(StrEnum):
    CREATE = "create"
    VERSION = "version"  # a file's content changed: a new current version
    MOVE = "move"  # renamed, moved, or both
    DELETE = "delete"  # moved to the trash, with everything below it
    RESTORE = "restore"  # back from the trash, with what was deleted with it
    PURGE = "purge"  # gone for good
    SHARE_GAINED = "share_gained"
    SHARE_CHANGED = "share_changed"  # the role of a share changed
    SHARE_LOST = "share_lost"


SHARE_KINDS = (ChangeKind.SHARE_GAINED, ChangeKind.SHARE_CHANGED, ChangeKind.SHARE_LOST)


class CursorExpired(Gone):
    """The cursor is older than the journal kept, or is not one of this user's: list the tree
    again and take a new cursor."""

    code = "reset"

    def __init__(self, why: str):
        super().__init__(f"cursor expired ({why}); list the tree again and start from GET /api/v1/changes/latest",
                         reset=True)


# ---- writing ---------------------------------------------------------------------------------

def entry(kind: str, node: Node, version: FileVersion | None = None, **fields) -> dict:
    """The journal row of a change to ``node`` (in its owner's journal), as ``node`` is now,
    with its current version ``version`` (read already, or None)."""
    row = dict(user_id=node.owner_id, kind=str(kind), node_id=node.id, node_kind=node.kind, owner_id=node.owner_id,
               name=node.name, parent_id=node.parent_id, path=node.path, version_id=node.current_version_id,
               size=version.size if version else None, sha256=version.sha256 if version else None,
               mtime=(version.mtime or version.created_at) if version else None)
    row.update(fields)
    return row


def created(node_id: int, node_kind: str, parent: Node, name: str, path: str, **fields) -> dict:
    """The journal row of a node just created in ``parent`` with ``path`` (inserted in bulk,
    without an ORM object to read it from)."""
    return dict(user_id=parent.owner_id, kind=str(ChangeKind.CREATE), node_id=node_id, node_kind=node_kind,
                owner_id=parent.owner_id, name=name, parent_id=parent.id, path=path, **fields)


_INSERT = sa.insert(Change.__table__)  # built once: every write records a change


def record(s: Session, rows: Sequence[dict]) -> None:
    """Append ``rows`` (made with :func:`entry`) to their journals, in this transaction. Each
    journal's user row is locked first, in id order (see the module's docstring)."""
    if not rows:
        return
    for user_id in sorted({r["user_id"] for r in rows}):
        lock_owner(s, user_id)
    t = now()
    blank = dict.fromkeys(("version_id", "size", "sha256", "mtime", "old_parent_id", "old_name", "old_path", "role"))
    execute_core(s, _INSERT, [{**blank, "at": t, **r} for r in rows])


def node_entry(s: Session, kind: str, node: Node, **fields) -> dict:
    """:func:`entry` with ``node``'s current version read."""
    v = s.get(FileVersion, node.current_version_id) if node.current_version_id else None
    return entry(kind, node, v, **fields)


def record_node(s: Session, kind: str, node: Node, **fields) -> None:
    """Record one change to ``node`` (flushed first, so its row is as the change left it)."""
    s.flush()
    record(s, [node_entry(s, kind, node, **fields)])


def record_share(s: Session, kind: str, node: Node, grantee_id: int, role: str | None) -> None:
    """Record, in ``grantee_id``'s journal, that they gained, lost or changed a share of
    ``node``. The owner's row is locked before the grantee's (see the module's docstring)."""
    lock_owner(s, node.owner_id)
    record(s, [node_entry(s, kind, node, user_id=grantee_id, role=role)])


# ---- cursors ---------------------------------------------------------------------------------

def encode_cursor(user_id: int, positions: dict[int, int]) -> str:
    raw = json.dumps({"v": CURSOR_VERSION, "u": user_id, "p": {str(k): v for k, v in sorted(positions.items())}},
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(user_id: int, cursor: str) -> dict[int, int]:
    """The positions of a cursor made for ``user_id``; anything else is :class:`CursorExpired`."""
    try:
        if not isinstance(cursor, str) or not 0 < len(cursor) <= 65536:
            raise ValueError
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or type(data.get("u")) is not int:
            raise ValueError
        pos = data.get("p")
        if not isinstance(pos, dict):
            raise ValueError
        out = {}
        for k, v in pos.items():
            if not (k.isascii() and k.isdigit()) or type(v) is not int or not 0 <= v < 2**63:
                raise ValueError
            out[int(k)] = v
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise CursorExpired("this is not a change-feed cursor") from None
    if data["u"] != user_id or user_id not in out:
        raise CursorExpired("it was issued to another user")
    return out


# ---- reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Root:
    """A folder (or file) shared with the reader, and the journal position from which its
    changes count for them (its grant)."""

    node_id: int
    owner_id: int
    role: str
    since: int


@dataclass
class View:
    """What a reader follows: their own journal and their share roots, grouped by owner."""

    user_id: int
    roots: dict[int, list[Root]] = field(default_factory=dict)  # by owner

    @property
    def journals(self) -> list[int]:
        return [self.user_id, *sorted(self.roots)]

    def sees(self, row) -> tuple[bool, bool, str | None]:
        """Whether the reader sees ``row``'s node after the change and before it (a move's
        origin), and their role on it."""
        if row.user_id == self.user_id:
            role = row.role if row.kind in SHARE_KINDS else "owner"
            return True, True, role
        if row.kind in SHARE_KINDS:
            return False, False, None
        new = old = False
        best = None
        for r in self.roots.get(row.user_id, ()):
            if row.seq <= r.since:
                continue
            tag = f"/{r.node_id}/"
            here = row.node_id == r.node_id or tag in (row.path or "")
            before = row.node_id == r.node_id or (tag in row.old_path if row.old_path is not None else here)
            if here and (best is None or ROLES[r.role] > ROLES[best]):
                best = r.role
            new, old = new or here, old or before
        if best is None and old:
            best = max((r.role for r in self.roots[row.user_id]), key=lambda x: ROLES[x])
        return new, old, best


@dataclass(frozen=True)
class ChangeEntry:
    seq: int
    kind: str
    node: NodeInfo
    at: dt.datetime
    old_parent_id: int | None = None
    old_name: str | None = None


@dataclass(frozen=True)
class ChangePage:
    entries: list[ChangeEntry]
    cursor: str
    has_more: bool


class ChangeFeed:
    """Reads the journal for one user at a time (see the module's docstring)."""

    def __init__(self, sm: sessionmaker):
        self.sm = sm

    def view(self, s: Session, user_id: int) -> View:
        """The journals ``user_id`` follows: their own, and those of the owners of the nodes
        shared with them (each root with the sequence number of its grant)."""
        view = View(user_id)
        rows = s.execute(sa.select(Share.node_id, Share.role, Node.owner_id).join(Node, Node.id == Share.node_id)
                         .where(Share.grantee_id == user_id)).all()
        if not rows:
            return view
        since = dict(s.execute(sa.select(Change.node_id, sa.func.max(Change.seq))
                               .where(Change.user_id == user_id, Change.kind == ChangeKind.SHARE_GAINED,
                                      Change.node_id.in_([r.node_id for r in rows]))
                               .group_by(Change.node_id)).all())
        for node_id, role, owner_id in rows:
            view.roots.setdefault(owner_id, []).append(Root(node_id, owner_id, role, since.get(node_id, 0)))
        return view

    def heads(self, s: Session, journals: Iterable[int]) -> dict[int, int]:
        """The last committed sequence number of each journal (0 for an empty one)."""
        ids = list(journals)
        # one index seek per journal: MAX ... GROUP BY walked every row of each journal on SQLite
        last = sa.select(sa.func.max(Change.seq)).where(Change.user_id == User.id).correlate(User).scalar_subquery()
        got = dict(s.execute(sa.select(User.id, last).where(User.id.in_(ids))).all())
        horizons = self.horizons(s, ids)
        return {j: max(got.get(j) or 0, horizons.get(j, 0)) for j in ids}

    @staticmethod
    def horizons(s: Session, journals: list[int]) -> dict[int, int]:
        return dict(s.execute(sa.select(ChangeHorizon.user_id, ChangeHorizon.seq)
                              .where(ChangeHorizon.user_id.in_(journals))).all())

    def latest(self, user_id: int) -> str:
        """A cursor at the end of everything ``user_id`` can see now."""
        with self.sm() as s, s.begin():
            return encode_cursor(user_id, self.heads(s, self.view(s, user_id).journals))

    def positions(self, s: Session, view: View, cursor: str) -> dict[int, int]:
        """Where ``cursor`` stands in each journal ``view`` follows: a journal it does not
        name yet (a share gained since) starts at its earliest grant. Raises
        :class:`CursorExpired` when a journal was pruned past the cursor."""
        pos = decode_cursor(view.user_id, cursor)
        horizons = self.horizons(s, view.journals)
        out = {}
        for j in view.journals:
            if j in pos:
                if pos[j] < horizons.get(j, 0):
                    raise CursorExpired("the changes after it were pruned")
                out[j] = pos[j]
            else:
                out[j] = max(min(r.since for r in view.roots[j]), horizons.get(j, 0))
        return out

    def read(self, user_id: int, cursor: str, limit: int = 500) -> ChangePage:
        """Up to ``limit`` entries after ``cursor``, in commit order, and the cursor after them."""
        limit = max(1, min(limit, MAX_PAGE))
        with self.sm() as s, s.begin():
            view = self.view(s, user_id)
            pos = self.positions(s, view, cursor)
            heads = self.heads(s, view.journals)  # before the rows: nothing above it is skipped
            fetched: list[tuple[Change, bool, bool, str]] = []
            cut: set[int] = set()
            for j in view.journals:
                q = sa.select(Change).where(Change.user_id == j, Change.seq > pos[j], Change.seq <= heads[j])
                if j != user_id:
                    q = q.where(Change.kind.not_in([str(k) for k in SHARE_KINDS]),
                                sa.or_(*(self._near(r) for r in view.roots[j])))
                rows = s.execute(q.order_by(Change.seq).limit(limit + 1)).scalars().all()
                if len(rows) > limit:
                    cut.add(j)
                for row in rows:
                    new, old, role = view.sees(row)
                    if new or old:
                        fetched.append((row, new, old, role))
            fetched.sort(key=lambda f: f[0].seq)
            page, rest = fetched[:limit], fetched[limit:]
            for row, *_ in rest:
                cut.add(row.user_id)
            new_pos = dict(pos)
            for j in view.journals:
                if j not in cut:
                    new_pos[j] = heads[j]
            for row, *_ in page:
                if row.user_id in cut:
                    new_pos[row.user_id] = max(new_pos[row.user_id], row.seq)
            entries = self._entries(s, page)
        return ChangePage(entries, encode_cursor(user_id, new_pos), bool(cut))

    @staticmethod
    def _near(root: Root):
        """SQL: a row that may concern ``root`` (its node, or a path through it now or before)."""
        tag = f"%/{root.node_id}/%"
        return sa.and_(Change.seq > root.since,
                       sa.or_(Change.node_id == root.node_id, Change.path.like(tag), Change.old_path.like(tag)))

    @staticmethod
    def _entries(s: Session, page: list[tuple[Change, bool, bool, str]]) -> list[ChangeEntry]:
        nids = {row.node_id for row, *_ in page}
        created = dict(s.execute(sa.select(Node.id, Node.created_at).where(Node.id.in_(nids))).all()) if nids else {}
        out = []
        for row, new, old, role in page:
            kind, name, parent_id = row.kind, row.name, row.parent_id
            if new and not old:
                kind = ChangeKind.CREATE if kind == ChangeKind.MOVE else kind
            elif old and not new:  # moved out of what the reader sees: shown where it was
                kind, name, parent_id = ChangeKind.DELETE, row.old_name or row.name, row.old_parent_id
            gone = kind in (ChangeKind.DELETE, ChangeKind.PURGE)
            size = row.size if row.version_id else (None if row.node_kind == "folder" else 0)
            info = NodeInfo(row.node_id, row.node_kind, name, parent_id, row.owner_id, size,
                            row.sha256.hex() if row.sha256 else None, row.version_id,
                            created.get(row.node_id), row.at, row.at if gone else None, role or "viewer",
                            row.mtime or row.at, 0, row.path)
            moved = kind == ChangeKind.MOVE
            out.append(ChangeEntry(row.seq, str(kind), info, row.at, row.old_parent_id if moved else None,
                                   row.old_name if moved else None))
        return out

    def changed(self, user_id: int, cursor: str) -> bool:
        """Whether anything is there to read after ``cursor`` (CursorExpired as :meth:`read`)."""
        return bool(self.read(user_id, cursor, limit=1).entries)

    # ---- waiting -----------------------------------------------------------------------------

    def watch(self, user_id: int, cursor: str) -> Watch:
        """What a long-poll on ``cursor`` waits for; :attr:`Watch.ready` when something is
        there already."""
        with self.sm() as s, s.begin():
            view = self.view(s, user_id)
            pos = self.positions(s, view, cursor)
            heads = self.heads(s, view.journals)
        # nothing new in any journal followed: nothing to read, without reading it
        moved = any(heads[j] > pos[j] for j in view.journals)
        return Watch(view, pos, ready=moved and self.changed(user_id, cursor))

    def woken(self, watches: Sequence[Watch]) -> list[Watch]:
        """Of ``watches``, those that something changed for since they were last checked
        (each watch then remembers how far it was checked). One query per 500 journals for
        their heads, and one for the new rows of each journal that moved."""
        low: dict[int, int] = {}  # per journal, the least any watch has checked
        for w in watches:
            for j, seq in w.seen.items():
                if seq < low.get(j, 2**63):
                    low[j] = seq
        journals = sorted(low)
        with self.sm() as s, s.begin():
            heads: dict[int, int] = {}
            for i in range(0, len(journals), 500):
                heads.update(self.heads(s, journals[i:i + 500]))
            rows = []
            for j, lo in low.items():
                if heads[j] > lo:
                    rows += s.execute(sa.select(Change).where(Change.user_id == j, Change.seq > lo,
                                                              Change.seq <= heads[j])).scalars().all()
        moved = {row.user_id for row in rows}
        woken = []
        for w in watches:
            if not w.ready and not moved.isdisjoint(w.seen):
                w.ready = any(row.seq > w.seen.get(row.user_id, 2**63) and any(w.view.sees(row)[:2])
                              for row in rows)
                w.seen = {j: max(seq, heads.get(j, seq)) for j, seq in w.seen.items()}
            if w.ready:
                woken.append(w)
        return woken

    # ---- pruning -----------------------------------------------------------------------------

    def prune(self, older_than: dt.datetime, batch: int = 500) -> int:
        """Delete the entries written before ``older_than``, a journal at a time in bounded
        transactions, moving each journal's horizon first. Returns the entries deleted."""
        with self.sm() as s:
            ends = s.execute(sa.select(Change.user_id, sa.func.max(Change.seq)).where(Change.at < older_than)
                             .group_by(Change.user_id)).all()
        deleted = 0
        for user_id, upto in ends:
            with self.sm() as s, s.begin():
                h = s.get(ChangeHorizon, user_id, with_for_update=True)
                if h is None:
                    s.add(ChangeHorizon(user_id=user_id, seq=upto))
                elif h.seq < upto:
                    h.seq = upto
            while True:
                with self.sm() as s, s.begin():
                    seqs = s.execute(sa.select(Change.seq).where(Change.user_id == user_id, Change.seq <= upto)
                                     .order_by(Change.seq).limit(batch)).scalars().all()
                    if seqs:
                        s.execute(sa.delete(Change).where(Change.seq.in_(seqs)))
                deleted += len(seqs)
                if len(seqs) < batch:
                    break
        return deleted


@dataclass
class Watch:
    """One long-poll: the reader's view, and how far each journal it follows was checked."""

    view: View
    seen: dict[int, int]
    ready: bool = False
