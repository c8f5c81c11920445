"""The pure three-way merge of a two-way sync: what to do, from the remote tree now, the local
tree now and the last synced tree (the base). No I/O: tested without a server or a disk.

Entries are matched by identity, not by path: a base entry is found on the server by its node
id and locally by its inode (a file saved by replacing it keeps its path; a file whose inode is
gone is found by its content among the new local files). So a rename or move on one side is a
move on the other, never a copy and a delete. Then, per entry:

- changed on one side only: copied to the other; changed on both to the same content: recorded;
  changed on both differently: a conflict (the server's version keeps the path, the local one
  becomes a conflicted copy);
- deleted on one side and unchanged on the other: deleted there too (to a trash on both sides);
  deleted on one side and changed on the other: the change wins and is copied back;
- a folder is deleted only when nothing is left in it once the plan is applied.

Paths are relative, "/"-separated, with the server's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..sync.plan import RemoteEntry, parent_of
from .state import BaseEntry

FILE, FOLDER = "file", "folder"


@dataclass(unsafe_hash=True)
class LocalEntry:
    """A local file or folder now: its stat key (size, mtime_ns, inode) and, for a file, its
    SHA-256 and size. Not changed once made (not frozen, as :class:`BaseEntry`)."""

    kind: str
    stat: tuple[int, int, int]
    sha256: str | None = None
    size: int | None = None


@dataclass
class Plan:
    """What a round does, in the order it is applied: moves, folders, files, deletes."""

    aside: list[tuple[str, str]] = field(default_factory=list)           # new local file renamed: (path, copy)
    moves: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # (side, base path, from, to, node id)
    mkdir_local: list[str] = field(default_factory=list)
    mkdir_remote: list[str] = field(default_factory=list)
    up: list[tuple[str, str | None]] = field(default_factory=list)         # (path, If-Match sha256 or None: new)
    down: list[tuple[str, int, str]] = field(default_factory=list)         # (path, node id, sha256)
    conflicts: list[tuple[str, str, int, str]] = field(default_factory=list)  # (path, copy path, node id, sha256)
    delete_local: list[str] = field(default_factory=list)
    delete_remote: list[tuple[str, int]] = field(default_factory=list)
    record: list[tuple[str, BaseEntry]] = field(default_factory=list)      # alike on both sides already
    forget: list[str] = field(default_factory=list)                        # gone from both sides
    rebase: list[tuple[str, str]] = field(default_factory=list)            # moved alike on both: (base, to)
    kept: list[tuple[str, str]] = field(default_factory=list)              # (path, why nothing was done)
    base_of: dict[str, str] = field(default_factory=dict)  # local path -> its base path (absent: the same)
    again: bool = False  # something waits for the next round (the trees will not agree after this one)

    def empty(self) -> bool:
        """True when the two trees agree (only bookkeeping is left)."""
        return not (self.aside or self.moves or self.mkdir_local or self.mkdir_remote or self.up or self.down or self.conflicts
                    or self.delete_local or self.delete_remote)


def conflict_name(rel: str, device: str, day: str, taken) -> str:
    """``name (conflicted copy DEVICE DAY).ext`` next to ``rel``, with `` 2``, `` 3``… before
    the extension while that path is in ``taken``."""
    p = PurePosixPath(rel)
    stem, ext = (p.stem, p.suffix) if p.stem else (p.name, "")
    n = 1
    while True:
        name = f"{stem} (conflicted copy {device} {day}{'' if n == 1 else f' {n}'}){ext}"
        out = f"{parent_of(rel)}/{name}" if parent_of(rel) else name
        if out not in taken:
            return out
        n += 1


def under(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")


def match_local(base: dict[str, BaseEntry], local: dict[str, LocalEntry]) -> dict[str, str]:
    """Each base path's local path now (absent: deleted locally): the same inode at the same
    path, else the same inode elsewhere (moved), else the same path (saved by replacing it),
    else, for a file, the same content among the local files no base entry claims (moved
    across file systems, or by a copy and a delete)."""
    out: dict[str, str] = {}
    claimed: set[str] = set()
    for rel, b in base.items():
        lo = local.get(rel)
        if lo is not None and lo.kind == b.kind and b.stat is not None and lo.stat[2] == b.stat[2]:
            out[rel] = rel
            claimed.add(rel)
    by_ino = {(lo.kind, lo.stat[2]): rel for rel, lo in local.items() if rel not in claimed}
    # (sorted for a stable answer; only what the first pass left, a few on a quiet day)
    for rel in sorted(r for r in base if r not in out):
        b = base[rel]
        if b.stat is None:
            continue
        cand = by_ino.get((b.kind, b.stat[2]))
        # an inode is reused by new files: a file's counts only with the stat or content it had
        if cand is not None and cand not in claimed and (b.kind == FOLDER or local[cand].stat == b.stat
                                                          or local[cand].sha256 == b.sha256):
            out[rel] = cand
            claimed.add(cand)
    for rel, b in base.items():
        lo = local.get(rel)
        if rel not in out and rel not in claimed and lo is not None and lo.kind == b.kind:
            out[rel] = rel
            claimed.add(rel)
    pool: dict[tuple, list[str]] = {}
    for rel in sorted(r for r in local if r not in claimed and r not in base and local[r].kind == FILE):
        pool.setdefault((local[rel].sha256, local[rel].size), []).append(rel)
    for rel in sorted(r for r in base if r not in out) if pool else ():
        b = base[rel]
        if b.kind == FILE and pool.get((b.sha256, b.size)):
            out[rel] = pool[(b.sha256, b.size)].pop(0)
    return out


def is_quiet(b: BaseEntry, lo: LocalEntry | None, r: RemoteEntry | None) -> bool:
    """Whether a base entry is as it was on both sides, at its path (a folder: the same inode
    and node; its own stat changes with what is in it)."""
    if lo is None or r is None or r.id != b.node_id or lo.kind != b.kind or r.kind != b.kind or b.stat is None:
        return False
    return lo.stat[2] == b.stat[2] if b.kind == FOLDER else lo.stat == b.stat and r.sha256 == b.sha256


def plan(base: dict[str, BaseEntry], local: dict[str, LocalEntry], remote: dict[str, RemoteEntry],
         device: str = "device", day: str = "1970-01-01", skipped: set[str] = frozenset()) -> Plan:
    """The round that makes ``local`` and ``remote`` agree, from their common ``base``.
    ``skipped``: local paths left out (links, special files, unreadable): nothing is done to
    them nor to the server's node at their path."""
    p = Plan()
    # entries alike on all three trees at the same path (most, most of the time) need no more
    quiet = {rel for rel, b in base.items() if is_quiet(b, local.get(rel), remote.get(rel))}
    if quiet:
        base = {rel: b for rel, b in base.items() if rel not in quiet}
    lpath = match_local(base, {rel: lo for rel, lo in local.items() if rel not in quiet} if quiet else local)
    rpath = {e.id: rel for rel, e in remote.items()}
    p.base_of = {lp: rel for rel, lp in lpath.items()}  # a quiet entry's is its own path
    claimed_local = set(lpath.values()) | quiet
    claimed_remote = {b.node_id for b in base.values() if b.node_id in rpath} | {remote[rel].id for rel in quiet}
    taken = set(local) | set(remote)
    # final places, for the survivors of deleted folders: (path on the side that keeps it)
    remote_out: set[str] = set()     # remote snapshot paths that leave their folder or are deleted
    local_out: set[str] = set()
    remote_in: list[str] = []        # paths something is put at on the server / locally
    local_in: list[str] = []
    del_remote: list[tuple[str, int]] = []
    del_local: list[str] = []
    settled: set[str] = set()        # new server nodes a conflict above already deals with
    placed: set[str] = set()         # where the entries on both sides end up

    for rel, b in base.items():
        lp, rp = lpath.get(rel), rpath.get(b.node_id)
        lo, r = (local[lp] if lp else None), (remote[rp] if rp else None)
        if r is not None and r.kind != b.kind:
            r, rp = None, None
        if rel in skipped or (lp and lp in skipped) or (rp and rp in skipped):
            p.kept.append((rel, "skipped locally: the server's copy is left as it is"))
            continue
        if lo is None and r is None:
            p.forget.append(rel)
            continue
        if lo is None:
            if b.kind == FILE and r.sha256 != b.sha256:
                p.down.append((rp, r.id, r.sha256))  # deleted here, edited there: the edit wins
                local_in.append(rp)
            else:
                del_remote.append((rp, r.id))
                remote_out.add(rp)
            continue
        if r is None:
            fresh = remote.get(lp) if lp in remote and remote[lp].id not in claimed_remote else None
            if b.kind == FILE and lo.sha256 != b.sha256 and fresh is not None and fresh.kind == FILE:
                # deleted there, edited here, and a new file took its name there: both kept
                copy = conflict_name(lp, device, day, taken)
                taken.add(copy)
                p.conflicts.append((lp, copy, fresh.id, fresh.sha256))
                settled.add(lp)
                local_in.append(copy)
                remote_in.append(copy)
            elif b.kind == FILE and lo.sha256 != b.sha256 and lp in remote and remote[lp].id != b.node_id:
                # deleted there, edited here, and another node moved to its name there: this one
                # is set aside, to go up under that name in the next round
                copy = conflict_name(lp, device, day, taken)
                taken.add(copy)
                p.aside.append((lp, copy))
                local_out.add(lp)
                p.again = True
            elif b.kind == FILE and lo.sha256 != b.sha256:
                p.up.append((lp, None))
                remote_in.append(lp)
                if lp != rel:
                    p.forget.append(rel)
            else:
                del_local.append(lp)
                local_out.add(lp)
            continue
        # on both sides: where it goes (a rename on one side wins; on both, the server's)
        target = rp if rp != rel else lp
        if (target == lp and lp != rp and lp in remote and remote[lp].id not in claimed_remote) or \
                (target != rel and target in placed):
            # renamed onto a name the server just gave a new node, or that another rename takes:
            # both kept, this one renamed
            target = conflict_name(target, device, day, taken)
            taken.add(target)
        placed.add(target)
        if lp != target:
            p.moves.append(("local", rel, lp, target, b.node_id))
            local_out.add(lp)
            local_in.append(target)
        if rp != target:
            p.moves.append(("remote", rel, rp, target, b.node_id))
            remote_out.add(rp)
            remote_in.append(target)
        if lp != target or rp != target:
            continue  # a round with moves applies only them: the next one sees the rest where it went
        if target != rel:
            p.rebase.append((rel, target))  # moved alike on both sides: only the base follows
        if b.kind == FOLDER:
            continue
        lchg, rchg = lo.sha256 != b.sha256, r.sha256 != b.sha256
        if lchg and rchg and lo.sha256 != r.sha256:
            copy = conflict_name(target, device, day, taken)
            taken.add(copy)
            p.conflicts.append((target, copy, r.id, r.sha256))
            local_in.append(copy)
            remote_in.append(copy)
        elif lchg and not rchg:
            p.up.append((target, r.sha256))
        elif rchg and not lchg:
            p.down.append((target, r.id, r.sha256))
        elif lo.stat != b.stat or lchg or target != rel:
            p.record.append((target, BaseEntry(FILE, r.id, r.sha256, r.size, lo.stat)))

    new_local = {rel: lo for rel, lo in local.items() if rel not in claimed_local}
    new_remote = {rel: e for rel, e in remote.items() if e.id not in claimed_remote and rel not in settled}
    for rel in sorted(set(new_local) | set(new_remote), key=lambda r: (r.count("/"), r)):
        lo, r = new_local.get(rel), new_remote.get(rel)
        if rel in skipped:
            p.kept.append((rel, "skipped locally: the server's copy is left as it is"))
        elif lo is not None and r is not None:
            if lo.kind != r.kind:
                p.kept.append((rel, f"a {lo.kind} here, a {r.kind} on the server: rename one"))
                p.again = True
            elif lo.kind == FOLDER:
                p.record.append((rel, BaseEntry(FOLDER, r.id, stat=lo.stat)))
            elif lo.sha256 == r.sha256:
                p.record.append((rel, BaseEntry(FILE, r.id, r.sha256, r.size, lo.stat)))
            else:
                copy = conflict_name(rel, device, day, taken)
                taken.add(copy)
                p.conflicts.append((rel, copy, r.id, r.sha256))
        elif lo is not None:
            if rel in remote and rel in remote_out:
                p.again = True  # the server's node leaves this path in this round: the next one sends it
            elif rel in remote:  # a node of the server is moved onto it: this one is set aside
                copy = conflict_name(rel, device, day, taken)
                taken.add(copy)
                p.aside.append((rel, copy))
                p.again = True
            elif lo.kind == FOLDER:
                p.mkdir_remote.append(rel)
                remote_in.append(rel)
            else:
                p.up.append((rel, None))
                remote_in.append(rel)
        else:
            if rel in local and rel in local_out:
                p.again = True  # what is here leaves in this round: the next one brings it down
            elif rel in local:
                p.kept.append((rel, "a local file or folder holds this path"))
                p.again = True
            elif r.kind == FOLDER:
                p.mkdir_local.append(rel)
                local_in.append(rel)
            else:
                p.down.append((rel, r.id, r.sha256))
                local_in.append(rel)

    # a folder deleted on one side goes on the other only if nothing stays in it there
    def stays(folder: str, snapshot, out: set[str], put: list[str]) -> bool:
        return any(under(x, folder) for x in put) or any(under(x, folder) and x not in out for x in snapshot)

    dead_remote = set()
    for rp, nid in sorted(del_remote):
        if remote[rp].kind == FOLDER and stays(rp, remote, remote_out, remote_in):
            p.mkdir_local.append(rp)  # recreated here for what stays in it
            continue
        dead_remote.add(rp)
        p.delete_remote.append((rp, nid))
    p.delete_remote = [(r, i) for r, i in p.delete_remote if not any(under(r, d) for d in dead_remote)]
    dead_local = set()
    for lp in sorted(del_local):
        if local[lp].kind == FOLDER and stays(lp, local, local_out, local_in):
            p.mkdir_remote.append(lp)
            continue
        dead_local.add(lp)
        p.delete_local.append(lp)
    p.delete_local = [r for r in p.delete_local if not any(under(r, d) for d in dead_local)]

    # a folder's move carries what is in it: its children's same moves are left out
    folder_moves = [(side, src, t) for side, _, src, t, _ in p.moves]
    p.moves = [m for m in p.moves if not any(side == m[0] and under(m[2], src) and m[3] == t + m[2][len(src):]
                                             for side, src, t in folder_moves)]
    # a folder reaches its place before what moves into it (else the way there would be made anew)
    p.moves.sort(key=lambda m: (m[3].count("/"), base[m[1]].kind != FOLDER, m[3]))
    depth = lambda r: (r.count("/"), r)  # noqa: E731
    p.mkdir_local.sort(key=depth)
    p.rebase.sort(key=lambda m: depth(m[0]))
    p.mkdir_remote.sort(key=depth)
    return p
