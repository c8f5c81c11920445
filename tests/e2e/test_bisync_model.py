"""A randomized model test of ``blockdrive bisync``: two replicas of one account (two local
folders, each with its own ``--state``, ``--device``, sign-in and XDG folders) and the server,
changed directly through the API as a third writer, all edited at random and synced with the
real ``blockdrive bisync`` command, run as a user runs it (a subprocess), sometimes killed with
SIGKILL halfway.

Each round makes a few random changes on each side (create, edit in place or by atomic
replace, touch, rename, move, delete a file; create, rename, move, delete a folder; the tree
kept small: at most ``MAX_FILES`` files, ``MAX_DEPTH`` folders deep), then runs bisync for A
and/or B in random order (sometimes A's and B's at the same time first).

The model records every content anyone ever wrote (``known``, by SHA-256) and the ones that
must survive (``survive``): a content written to the server, or on a replica's disk when a
bisync that ran to its end started. A content a replica overwrote or deleted before any
bisync saw it never reached anyone, and neither need one that only a killed bisync saw.

After every round: every file on either replica, on the server and in a replica's trash holds
a content the model knows (nothing corrupted or half written), no puller's partial file
reached the server, and every entry of a replica's trash has its ``.trashinfo``. After every
bisync that was not killed and ran alone: it exited 0 and printed its summary line, and its
replica's tree is the server's (run beside the other replica's, exit 1 is allowed: the trees may
not agree at its end). At the end, bisync runs A, B, A, B… until a round of both has nothing to do
(bounded); then A's tree, B's tree and the server's are the same (paths, kinds, bytes), and
every content that must survive is somewhere: in that tree, in a version of a server file (the
trash restored to reach what it holds), or in a replica's trash.

``BLOCKDRIVE_MODEL_SEED`` (first seed, default 1), ``BLOCKDRIVE_MODEL_SEEDS`` (how many seeds
from it; default 2, or 1 when a seed is given) and ``BLOCKDRIVE_MODEL_ROUNDS`` (default 10)
size the run; ``make soak`` runs more. A failure prints the seed, the line that replays it,
the operation log (with bisync's output) and the three trees. The operations replay exactly
from the seed; where a kill lands in a bisync run depends on timing, so a failure after a kill
may need a few replays.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.reliability import figures

BIN = Path(sys.executable).parent / "blockdrive"
REMOTE = "/sync"
FILE_NAMES = ("a.txt", "b.bin", "notes.md", "c", "report 1.txt", "e.dat", "f.log")
FOLDER_NAMES = ("d1", "docs", "x y", "sub", "old")
MAX_FILES = 30
MAX_DEPTH = 3
KILL_CHANCE = 0.2
BIG_CHANCE = 0.06
BIG = (200_000, 1_200_000)  # bytes of a big content: a few blocks of the e2e server's chunking
TOGETHER_CHANCE = 0.15
QUIESCE_ROUNDS = 4
BISYNC_TIMEOUT = 180
PARTIAL = re.compile(r"^\.blockdrive-[0-9a-f]+\.part$")  # the puller's temporary file (client/sync/pull.py)
SUMMARY = re.compile(r"^bisync: (\d+) up, (\d+) down, (\d+) moved, (\d+) deleted, (\d+) conflicts$", re.M)

Tree = dict[str, tuple[str, str | None]]  # relative path -> (kind, sha256 of a file's bytes)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def seeds() -> list[int]:
    first = env_int("BLOCKDRIVE_MODEL_SEED", 1)
    count = env_int("BLOCKDRIVE_MODEL_SEEDS", 1 if os.environ.get("BLOCKDRIVE_MODEL_SEED") else figures.scale(2, 20))
    return list(range(first, first + count))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def depth(path: str) -> int:
    return len(path.split("/")) if path else 0


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(path: str) -> str:
    return path.rpartition("/")[0]


class ModelFailure(AssertionError):
    """A failed check, its message already holding the seed, the log and the trees."""


class Model:
    """What the test knows: every content written (``known``), the ones that must survive,
    and the log of everything done, for the failure report."""

    def __init__(self, seed: int, rounds: int):
        self.seed, self.rounds, self.round = seed, rounds, 0
        self.known: dict[str, str] = {}
        self.contents: dict[str, bytes] = {}
        self.survive: dict[str, str] = {}
        self.log: list[str] = []
        self.sides: list = []
        self.writes = self.changes = self.runs = self.kills = 0
        self.counts = [0] * 5  # up, down, moved, deleted, conflicts: the summary lines added up
        self.durations: list[float] = []  # seconds of the bisync runs that ended, for when to kill one

    def note(self, line: str) -> None:
        self.log.append(f"r{self.round} {line}")

    def kill_delay(self, rng: random.Random) -> float:
        """When to kill a run: somewhere within what a run lately took (so most kills land
        halfway, some before it did anything)."""
        typical = statistics.median(self.durations[-10:]) if self.durations else 1.5
        return rng.uniform(0.1, 1.0) * typical

    def ran(self, counts: tuple[int, ...] | None) -> None:
        self.runs += 1
        if counts is None:
            self.kills += 1
        else:
            self.counts = [a + b for a, b in zip(self.counts, counts)]

    def new_content(self, rng: random.Random, who: str, old: bytes | None = None) -> bytes:
        """Bytes nobody wrote before (a counter in them): mostly small; sometimes big (several
        blocks); an edit of a big file mostly changes a few KB of it (so only a block or two
        differ, for the delta transfer to skip the rest)."""
        self.writes += 1
        head = f"{who} write {self.writes} seed {self.seed}\n".encode()
        if old is not None and len(old) > BIG[0] and rng.random() < 0.7:
            body = bytearray(old.partition(b"\n")[2])
            at, n = rng.randrange(len(body)), rng.randint(1, 5000)
            body[at:at + n] = rng.randbytes(n)
            return head + bytes(body)
        if rng.random() < BIG_CHANCE:
            return head + rng.randbytes(rng.randint(*BIG))
        return head + rng.randbytes(rng.choice((0, 10, 100, 1000, rng.randint(1, 5000))))

    def wrote(self, data: bytes, origin: str) -> str:
        digest = sha(data)
        self.known.setdefault(digest, origin)
        self.contents[digest] = data
        return digest

    def must_survive(self, digest: str, origin: str) -> None:
        self.survive.setdefault(digest, origin)

    def fail(self, msg: str) -> None:
        trees = {}
        for side in self.sides:
            try:
                trees[side.name] = side.tree()
            except (OSError, AssertionError, requests.RequestException) as exc:  # show what can be read
                trees[side.name] = {"<unreadable>": (repr(exc), None)}
        lines = [f"bisync model, seed {self.seed}, round {self.round} of {self.rounds}: {msg}",
                 f"replay: BLOCKDRIVE_MODEL_SEED={self.seed} BLOCKDRIVE_MODEL_ROUNDS={self.rounds} "
                 f"pytest tests/e2e/test_bisync_model.py", "", "operations:", *self.log, "",
                 "trees (A, B, server; differences marked *):", *tree_table(trees)]
        raise ModelFailure("\n".join(lines))


def tree_table(trees: dict[str, Tree]) -> list[str]:
    names = list(trees)
    out = []
    for path in sorted(set().union(*trees.values())):
        cells = [trees[n].get(path) for n in names]
        shown = ["-" if c is None else ("dir" if c[0] == "folder" else (c[1] or "?")[:10]) for c in cells]
        mark = " " if all(c == cells[0] for c in cells) else "*"
        out.append(f" {mark} {path:<50} " + "  ".join(f"{n}={s:<10}" for n, s in zip(names, shown)))
    return out


def tree_diff(a: Tree, b: Tree) -> list[str]:
    return [f"{p}: {a.get(p)} != {b.get(p)}" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


# ---- the sides -----------------------------------------------------------------------------

class Replica:
    """One device: a local folder synced to ``REMOTE`` by ``blockdrive bisync`` with its own
    state file, device name, sign-in (``blockdrive login``) and XDG folders (its trash)."""

    def __init__(self, name: str, home: Path, server, user):
        self.name, self.home = name, home
        self.root = home / "tree"
        self.state = home / "state.sqlite"
        self.trash = home / "data" / "Trash"
        self.root.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("BLOCKDRIVE_URL", "BLOCKDRIVE_TOKEN")}
        self.env.update(XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
                        XDG_CONFIG_HOME=str(home / "config"), BLOCKDRIVE_PASSWORD="password123")
        out = subprocess.run([str(BIN), "login", server.url, "--email", user.email], env=self.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out

    def path(self, rel: str) -> Path:
        return self.root / rel

    def tree(self) -> Tree:
        out: Tree = {}
        for dirpath, dirs, files in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel
            for d in dirs:
                out[join(rel, d)] = ("folder", None)
            for f in files:
                if not PARTIAL.match(f):
                    out[join(rel, f)] = ("file", sha((Path(dirpath) / f).read_bytes()))
        return out

    def trashed(self) -> dict[str, str]:
        """Every file in this device's trash (``files/``, folders walked): path -> sha256."""
        out = {}
        for dirpath, _, files in os.walk(self.trash / "files"):
            for f in files:
                p = Path(dirpath) / f
                out[str(p.relative_to(self.trash))] = sha(p.read_bytes())
        return out

    def trash_without_info(self) -> list[str]:
        files = self.trash / "files"
        if not files.is_dir():
            return []
        return [e.name for e in files.iterdir() if not (self.trash / "info" / f"{e.name}.trashinfo").is_file()]

    # changes, as a user makes them
    def create(self, rel: str, data: bytes, rng: random.Random) -> str:
        self.path(rel).write_bytes(data)
        return "create"

    def edit(self, rel: str, data: bytes, rng: random.Random) -> str:
        if rng.random() < 0.5:
            with open(self.path(rel), "r+b") as f:  # in place: the inode stays
                f.write(data)
                f.truncate()
            return "edit in place"
        tmp = self.path(parent(rel)) / ".edit.tmp"  # as editors save: write aside, rename over
        tmp.write_bytes(data)
        os.replace(tmp, self.path(rel))
        return "edit by replace"

    def touch(self, rel: str) -> None:
        os.utime(self.path(rel))

    def move(self, old: str, new: str) -> None:
        assert not self.path(new).exists()
        os.rename(self.path(old), self.path(new))

    def delete(self, rel: str) -> None:
        p = self.path(rel)
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    def mkdir(self, rel: str) -> None:
        self.path(rel).mkdir()

    # bisync
    def bisync(self, model: Model, kill_after: float | None = None) -> tuple[int, ...] | None:
        """Run bisync (killed with SIGKILL after ``kill_after`` seconds if given): the counts of
        its summary line, or None when it was killed before it ended."""
        return self.finish(model, self.start(model), kill_after)

    def start(self, model: Model) -> tuple[subprocess.Popen, Tree, float]:
        """Start bisync; with it, the tree it starts from and when it started."""
        before = self.tree()
        for rel, (kind, digest) in before.items():
            if kind == "file" and digest not in model.known:
                model.fail(f"{self.name}/{rel} holds bytes nobody wrote ({digest[:10]}) before bisync {self.name}")
        cmd = [str(BIN), "bisync", str(self.root), REMOTE, "--state", str(self.state), "--device", self.name]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc, before, time.monotonic()

    def finish(self, model: Model, run: tuple[subprocess.Popen, Tree, float], kill_after: float | None = None,
               alone: bool = True) -> tuple[int, ...] | None:
        """Wait for a bisync :meth:`start` began, or kill it after ``kill_after`` seconds. Run
        ``alone`` (nothing else writing), it must end with exit 0; beside the other replica's
        bisync, exit 1 (the trees did not agree at the end: someone else wrote) is allowed too,
        and that run is treated as a killed one."""
        proc, before, started = run
        killed = False
        try:
            out, err = proc.communicate(timeout=kill_after if kill_after is not None else BISYNC_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            killed = True
        said = "; ".join(line for line in (out + err).splitlines() if line.strip())
        if killed and kill_after is None:
            model.note(f"bisync {self.name}: hung, killed after {BISYNC_TIMEOUT} s: {said}")
            model.fail(f"bisync {self.name} did not end within {BISYNC_TIMEOUT} s")
        if killed:
            model.note(f"bisync {self.name}: killed -9 after {kill_after:.2f} s: {said}")
            model.ran(None)
            return None
        model.durations.append(time.monotonic() - started)
        how = "" if alone else " (beside the other)"
        model.note(f"bisync {self.name}{how}{' (kill too late)' if kill_after else ''}: exit {proc.returncode}: {said}")
        if proc.returncode not in ((0,) if alone else (0, 1)):
            model.fail(f"bisync {self.name} exited {proc.returncode}: {err.strip()}")
        m = SUMMARY.search(out)
        if m is None:
            model.fail(f"bisync {self.name} printed no summary line")
        counts = tuple(int(g) for g in m.groups())
        if proc.returncode != 0:
            model.ran(None)
            return None
        for rel, (kind, digest) in before.items():
            if kind == "file":
                model.must_survive(digest, f"{self.name}/{rel} on disk when bisync {self.name} started, r{model.round}")
        model.ran(counts)
        return counts


class Remote:
    """``REMOTE`` on the server, changed through the API as a third writer."""

    name = "server"

    def __init__(self, user):
        self.u = user
        self.root_id = user.mkdir(user.root, REMOTE.strip("/"))["id"]
        self.ids: dict[str, int] = {"": self.root_id}

    def listing(self, root_id: int) -> dict[str, dict]:
        r = self.u.get(f"/api/v1/nodes/{root_id}/tree")
        assert r.status_code == 200, r.text
        t = r.json()
        assert not t["truncated"]
        paths, out = {root_id: ""}, {}
        for it in t["items"]:  # parents come before their children
            paths[it["id"]] = join(paths[it["parent_id"]], it["name"])
            out[paths[it["id"]]] = it
        return out

    def tree(self) -> Tree:
        items = self.listing(self.root_id)
        self.ids = {"": self.root_id, **{p: it["id"] for p, it in items.items()}}
        return {p: (it["kind"], it["sha256"] if it["kind"] == "file" else None) for p, it in items.items()}

    def tree_bytes(self) -> Tree:
        """The tree with each file's bytes downloaded and hashed (not the server's own hash)."""
        out = self.tree()
        for p, (kind, _) in out.items():
            if kind == "file":
                out[p] = ("file", sha(self.content(self.ids[p])))
        return out

    def content(self, node_id: int) -> bytes:
        r = self.u.get(f"/api/v1/nodes/{node_id}/content")
        assert r.status_code == 200, r.text
        return r.content

    def check(self, r, *ok: int):
        assert r.status_code in ok, (r.request.method, r.request.url, r.status_code, r.text)
        return r

    def create(self, rel: str, data: bytes, rng: random.Random) -> str:
        self.check(self.u.upload(self.ids[parent(rel)], rel.rpartition("/")[2], data), 201)
        return "create"

    def edit(self, rel: str, data: bytes, rng: random.Random) -> str:
        self.check(self.u.upload(self.ids[parent(rel)], rel.rpartition("/")[2], data), 200)
        return "edit (new version)"

    def move(self, old: str, new: str) -> None:
        body = {"name": new.rpartition("/")[2], "parent_id": self.ids[parent(new)]}
        self.check(self.u.patch(f"/api/v1/nodes/{self.ids[old]}", json=body), 200)

    def delete(self, rel: str) -> None:
        self.check(self.u.delete(f"/api/v1/nodes/{self.ids[rel]}"), 200, 204)

    def mkdir(self, rel: str) -> None:
        self.u.mkdir(self.ids[parent(rel)], rel.rpartition("/")[2])

    def trash_here(self) -> list[dict]:
        """The trash entries whose folder is a live folder of ``REMOTE`` (listed by :meth:`tree`)."""
        live = set(self.ids.values())
        return [e for e in self.check(self.u.get("/api/v1/trash"), 200).json()["items"] if e["parent_id"] in live]

    def restore(self, node_id: int) -> dict:
        return self.check(self.u.post(f"/api/v1/nodes/{node_id}/restore"), 200).json()

    def versions(self, rel: str) -> list[dict]:
        """The file's versions, newest (the current one) first."""
        return self.check(self.u.get(f"/api/v1/nodes/{self.ids[rel]}/versions"), 200).json()["items"]

    def restore_version(self, rel: str, version_id: int) -> None:
        self.check(self.u.post(f"/api/v1/nodes/{self.ids[rel]}/versions/{version_id}/restore"), 200)

    def every_version(self) -> set[str]:
        """The sha256 of every version of every file the user has, the trash restored first
        so that what it holds (files inside deleted folders too) can be listed."""
        for entry in self.check(self.u.get("/api/v1/trash"), 200).json()["items"]:
            self.restore(entry["id"])
        assert self.check(self.u.get("/api/v1/trash"), 200).json()["items"] == []
        out = set()
        for it in self.listing(self.u.root).values():
            if it["kind"] == "file":
                versions = self.check(self.u.get(f"/api/v1/nodes/{it['id']}/versions"), 200).json()["items"]
                out.update(v["etag"] for v in versions)
        return out


# ---- random changes ------------------------------------------------------------------------

def free_name(tree: Tree, folder: str, pool: tuple[str, ...], rng: random.Random) -> str:
    taken = {p.rpartition("/")[2].casefold() for p in tree if parent(p) == folder}
    free = [n for n in pool if n.casefold() not in taken]
    if free:
        return rng.choice(free)
    stem, dot, ext = rng.choice(pool).partition(".")
    n = 2
    while f"{stem} {n}{dot}{ext}".casefold() in taken:
        n += 1
    return f"{stem} {n}{dot}{ext}"


def height(tree: Tree, folder: str) -> int:
    """Folder levels from ``folder`` down (1 for a folder with no folder in it)."""
    return 1 + max((depth(p) - depth(folder) for p, e in tree.items()
                    if e[0] == "folder" and p.startswith(folder + "/")), default=0)


def random_change(rng: random.Random, side, model: Model) -> None:
    """One random change on ``side`` (a Replica or the Remote), recorded in ``model``."""
    model.changes += 1
    tree = side.tree()
    files = sorted(p for p, e in tree.items() if e[0] == "file")
    folders = [""] + sorted(p for p, e in tree.items() if e[0] == "folder")
    shallow = [f for f in folders if depth(f) < MAX_DEPTH]
    local = isinstance(side, Replica)
    weights = {"create": 3 * (len(files) < MAX_FILES), "edit": 3 * bool(files), "touch": 0.5 * bool(files) * local,
               "rename": bool(files), "move": bool(files) * (len(folders) > 1), "delete": 1.5 * bool(files),
               "mkdir": bool(shallow), "rename folder": 0.5 * (len(folders) > 1),
               "move folder": 0.5 * (len(folders) > 2), "delete folder": 0.4 * (len(folders) > 1),
               "restore": 0.5 * (not local), "restore version": 0.3 * bool(files) * (not local)}
    op = rng.choices(list(weights), list(weights.values()))[0]
    who = side.name
    if op in ("create", "edit"):
        if op == "create":
            folder = rng.choice(folders)
            rel = join(folder, free_name(tree, folder, FILE_NAMES, rng))
        else:
            rel = rng.choice(files)
        if op == "edit" and rng.random() < 0.15:  # bytes another file has or had: the same content twice
            data = model.contents[rng.choice(sorted(model.contents))]
        else:
            data = model.new_content(rng, who, model.contents.get(tree[rel][1]) if op == "edit" else None)
        digest = model.wrote(data, f"{who}: {op} {rel}, r{model.round}")
        how = side.create(rel, data, rng) if op == "create" else side.edit(rel, data, rng)
        model.note(f"{who}: {how} {rel} = {digest[:10]} ({len(data)} B)")
        if not local:
            model.must_survive(digest, f"{who}: {how} {rel}, r{model.round}")
    elif op == "touch":
        rel = rng.choice(files)
        side.touch(rel)
        model.note(f"{who}: touch {rel}")
    elif op in ("rename", "move", "rename folder", "move folder"):
        folder_op = op.endswith("folder")
        old = rng.choice(folders[1:] if folder_op else files)
        if op.startswith("rename"):
            to = parent(old)
        else:
            fits = [f for f in folders if f != parent(old) and not (folder_op and (f == old or f.startswith(old + "/")))
                    and (not folder_op or depth(f) + height(tree, old) <= MAX_DEPTH)]
            if not fits:
                return
            to = rng.choice(fits)
        name = old.rpartition("/")[2]
        taken = {p.rpartition("/")[2].casefold() for p in tree if parent(p) == to}
        if op.startswith("rename") or name.casefold() in taken or rng.random() < 0.3:
            name = free_name(tree, to, FOLDER_NAMES if folder_op else FILE_NAMES, rng)
        side.move(old, join(to, name))
        model.note(f"{who}: {op} {old} -> {join(to, name)}")
    elif op == "delete":
        rel = rng.choice(files)
        side.delete(rel)
        model.note(f"{who}: delete {rel}")
    elif op == "mkdir":
        folder = rng.choice(shallow)
        rel = join(folder, free_name(tree, folder, FOLDER_NAMES, rng))
        side.mkdir(rel)
        model.note(f"{who}: mkdir {rel}")
    elif op == "delete folder":
        rel = rng.choice(folders[1:])
        side.delete(rel)
        model.note(f"{who}: delete folder {rel} ({sum(p.startswith(rel + '/') for p in tree)} entries below)")
    elif op == "restore":
        entries = side.trash_here()
        if entries:
            entry = rng.choice(entries)
            node = side.restore(entry["id"])
            model.note(f"{who}: restore {entry['kind']} {entry['name']} from the trash -> {node['name']}")
    else:
        rel = rng.choice(files)
        old = side.versions(rel)[1:]
        if old:
            v = rng.choice(old)
            side.restore_version(rel, v["id"])
            model.note(f"{who}: restore {rel} to its version {v['etag'][:10]}")


# ---- invariants ----------------------------------------------------------------------------

def check_round(model: Model, replicas: list[Replica], remote: Remote) -> None:
    """What holds between bisync runs, whatever was killed: no side holds bytes nobody wrote,
    nothing partial reached the server, the trash entries are whole."""
    for side in (*replicas, remote):
        for rel, (kind, digest) in side.tree().items():
            if kind == "file" and digest not in model.known:
                model.fail(f"{side.name}/{rel} holds bytes nobody wrote ({digest[:10]})")
            if PARTIAL.match(rel.rpartition("/")[2]) and side is remote:
                model.fail(f"the puller's partial file {rel} reached the server")
    for rep in replicas:
        for where, digest in rep.trashed().items():
            if digest not in model.known:
                model.fail(f"{rep.name}'s {where} holds bytes nobody wrote ({digest[:10]})")
        if missing := rep.trash_without_info():
            model.fail(f"{rep.name}'s trash has no .trashinfo for {missing}")


def check_synced(model: Model, rep: Replica, remote: Remote) -> None:
    """After a bisync that ended with exit 0 (and nobody else writing): its tree is the server's."""
    if diff := tree_diff(rep.tree(), remote.tree()):
        model.fail(f"bisync {rep.name} exited 0 but {rep.name} and the server differ: " + "; ".join(diff))


def quiesce(model: Model, replicas: list[Replica], remote: Remote) -> None:
    """bisync A, B, A, B… until a whole round of them has nothing to do."""
    for n in range(QUIESCE_ROUNDS):
        model.round = f"{model.rounds}+{n}"
        idle = True
        for rep in replicas:
            counts = rep.bisync(model)
            check_synced(model, rep, remote)
            idle = idle and not any(counts)
        if idle:
            return
    model.fail(f"still changing after {QUIESCE_ROUNDS} rounds of bisync with nobody else writing")


def check_final(model: Model, replicas: list[Replica], remote: Remote) -> None:
    trees = [rep.tree() for rep in replicas]
    server = remote.tree_bytes()
    for rep, tree in zip(replicas, trees):
        if diff := tree_diff(tree, server):
            model.fail(f"at rest, {rep.name} and the server differ: " + "; ".join(diff))
    where = {d: "the tree" for _, d in server.values() if d}
    for rep in replicas:
        where.update({d: f"{rep.name}'s trash" for d in rep.trashed().values() if d not in where})
    where.update({d: "a server version" for d in remote.every_version() if d not in where})
    lost = {d: why for d, why in model.survive.items() if d not in where}
    figures.record("bisync model (two replicas)", runs=model.runs, kills=model.kills, lost=len(lost), seed=model.seed,
                   rounds=model.rounds, changes=model.changes, conflicts=model.counts[4],
                   contents_checked=len(model.survive))
    if lost:
        model.fail(f"{len(lost)} content(s) lost: " + "; ".join(f"{d[:10]} ({why})" for d, why in lost.items()))


# ---- the test ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", seeds())
def test_two_replicas_and_the_server_converge(server, tmp_path, seed):
    rounds = env_int("BLOCKDRIVE_MODEL_ROUNDS", figures.scale(10, 40))
    rng = random.Random(seed)
    model = Model(seed, rounds)
    user = server.user()
    remote = Remote(user)
    replicas = [Replica(name, tmp_path / name, server, user) for name in ("A", "B")]
    model.sides = [*replicas, remote]
    try:
        for n in range(rounds):
            model.round = n
            for side in rng.sample(model.sides, 3):
                for _ in range(rng.randint(0, 3)):
                    random_change(rng, side, model)
            if rng.random() < TOGETHER_CHANCE:  # both devices at once
                runs = [(rep, rep.start(model)) for rep in rng.sample(replicas, 2)]
                for rep, run in runs:
                    rep.finish(model, run, alone=False)
            for rep in rng.choice(([replicas[0]], [replicas[1]], replicas, replicas[::-1], [*replicas, replicas[0]])):
                counts = rep.bisync(model, kill_after=model.kill_delay(rng) if rng.random() < KILL_CHANCE else None)
                if counts is not None:  # not killed
                    check_synced(model, rep, remote)
            check_round(model, replicas, remote)
        quiesce(model, replicas, remote)
        check_final(model, replicas, remote)
    except ModelFailure:
        raise
    except (AssertionError, OSError, KeyError, requests.RequestException) as exc:  # a request or file change failed
        model.fail(f"{type(exc).__name__}: {exc}")
