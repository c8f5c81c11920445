"""The sides of the two-replica bisync model test (tests/e2e/test_bisync_model.py) and what it
knows: :class:`Model` (every content written, the ones that must survive, the log, the failure
report), :class:`Replica` (a device: a local folder, its own sign-in, XDG folders and state, synced
by the ``blockdrive`` command) and :class:`Remote` (the synced folder on the server, changed
through the API as a third writer)."""

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
from urllib.parse import unquote

import requests

BIN = Path(sys.executable).parent / "blockdrive"
REMOTE = "/sync"
BIG_CHANCE = 0.06
BIG = (200_000, 1_200_000)  # bytes of a big content: a few blocks of the e2e server's chunking
BISYNC_TIMEOUT = 180
PARTIAL = re.compile(r"^\.blockdrive-[0-9a-f]+\.part$")  # the puller's temporary file (client/sync/pull.py)
DELETED_LOCAL = re.compile(r"^delete local (.+)$", re.M)
SUMMARY = re.compile(r"^bisync: (\d+) up, (\d+) down, (\d+) moved, (\d+) deleted, (\d+) conflicts$", re.M)

Tree = dict[str, tuple[str, str | None]]  # relative path -> (kind, sha256 of a file's bytes)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        """Every file in this device's trash (``files/``, folders walked): path -> sha256. A
        puller's partial file that went with its folder is left out, as in :meth:`tree`."""
        out = {}
        for dirpath, _, files in os.walk(self.trash / "files"):
            for f in files:
                if PARTIAL.match(f):
                    continue
                p = Path(dirpath) / f
                out[str(p.relative_to(self.trash))] = sha(p.read_bytes())
        return out

    def trash_without_info(self) -> list[str]:
        files = self.trash / "files"
        if not files.is_dir():
            return []
        return [e.name for e in files.iterdir() if not (self.trash / "info" / f"{e.name}.trashinfo").is_file()]

    def trashed_paths(self) -> set[str]:
        """The original paths (``Path=`` of each ``.trashinfo``) of what this device's trash holds."""
        out = set()
        for info in (self.trash / "info").glob("*.trashinfo"):
            if (self.trash / "files" / info.name[:-len(".trashinfo")]).exists():
                line = next((x for x in info.read_text().splitlines() if x.startswith("Path=")), "Path=")
                out.add(unquote(line[len("Path="):]))
        return out

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
        # nothing is unlinked for good: what it deleted here is in this device's trash, under its path
        gone = [m for m in DELETED_LOCAL.findall(out) if str(self.root / m) not in self.trashed_paths()]
        if gone:
            model.fail(f"bisync {self.name} deleted {gone} locally but they are not in {self.name}'s trash")
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
