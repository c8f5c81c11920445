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
bisync that was not killed: each file it said it deleted locally is in that device's trash under
its path (nothing unlinked for good); run alone, it exited 0 and printed its summary line, and its
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

import os
import random

import pytest
import requests

from tests.e2e.bisync_model import PARTIAL, Model, ModelFailure, Remote, Replica, Tree, join, parent, tree_diff
from tests.reliability import figures

FILE_NAMES = ("a.txt", "b.bin", "notes.md", "c", "report 1.txt", "e.dat", "f.log")
FOLDER_NAMES = ("d1", "docs", "x y", "sub", "old")
MAX_FILES = 30
MAX_DEPTH = 3
KILL_CHANCE = 0.2
TOGETHER_CHANCE = 0.15
QUIESCE_ROUNDS = 4


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def seeds() -> list[int]:
    first = env_int("BLOCKDRIVE_MODEL_SEED", 1)
    count = env_int("BLOCKDRIVE_MODEL_SEEDS", 1 if os.environ.get("BLOCKDRIVE_MODEL_SEED") else figures.scale(2, 10))
    return list(range(first, first + count))


def depth(path: str) -> int:
    return len(path.split("/")) if path else 0


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
