"""The benchmark data sets, generated reproducibly from a seed (same seed, same bytes).

- :func:`random_file`: random bytes, nothing to deduplicate or compress.
- :func:`versioned_corpus`: successive versions of a source tree in one working folder:
  text-like files (compressible), each version editing, inserting and deleting small parts of
  some files, adding and removing a few files.
- :func:`edited_pair`: one large file and the same file edited in place (inserts, overwrites).
- :func:`small_files`: many small files (1-64 KiB) in nested folders.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

MiB = 1024 * 1024


def random_file(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 8 * MiB)
            fh.write(rng.bytes(n))
            left -= n
    return path


class _Text:
    """Source-code-like text: lines of words from a fixed vocabulary, indented."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz_", dtype=np.uint8)
        words = []
        for _ in range(4000):
            n = int(self.rng.integers(2, 12))
            words.append(bytes(self.rng.choice(letters, n)))
        words += [b"def", b"return", b"if", b"else:", b"for", b"in", b"(", b")", b"=", b"+", b"self.", b"import"]
        self.words = np.array(words, dtype=object)

    def __call__(self, n: int) -> bytes:
        if n <= 0:
            return b""
        idx = self.rng.integers(0, len(self.words), n // 5 + 8)
        ws = self.words[idx].tolist()
        out, line = [], []
        for i, w in enumerate(ws):
            line.append(w)
            if len(line) >= 6 + (i % 7):
                out.append(b"    " * (i % 3) + b" ".join(line))
                line = []
        return b"\n".join(out)[:n].ljust(n, b"\n")


def _sizes(rng: random.Random, files: int, total: int) -> list[int]:
    """Log-normal file sizes (most files a few KiB, a few of several MiB) scaled to ``total``."""
    raw = [min(rng.lognormvariate(9.5, 1.6), 64 * MiB) for _ in range(files)]
    k = total / sum(raw)
    return [max(64, int(x * k)) for x in raw]


def _edit(rng: random.Random, text: _Text, data: bytes) -> bytes:
    """One small edit: insert, delete or overwrite a few bytes to a few hundred."""
    pos = rng.randrange(len(data) + 1)
    op = rng.choice(("insert", "delete", "overwrite"))
    n = rng.randint(1, 400)
    if op == "insert":
        return data[:pos] + text(n) + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + n:]
    return data[:pos] + text(n) + data[pos + n:]


def versioned_corpus(work: Path, versions: int, files: int, total: int, seed: int):
    """Write version 0 of a source tree into ``work``, then turn it into each next version in
    place, as a working copy changes; yields ``(version, changed, deleted)`` after each (paths
    relative to ``work``; version 0 lists every file as changed). Version k+1 edits ~8% of the
    files of version k (1-4 small edits each), adds ~1% new files and removes ~0.5%. Files that
    did not change are not rewritten, so their mtimes stay."""
    rng = random.Random(seed)
    text = _Text(seed)
    tree: dict[str, bytes] = {}
    for i, size in enumerate(_sizes(rng, files, total)):
        tree[f"pkg{i % 17:02d}/mod{i % 5}/file{i:05d}.py"] = text(size)
    changed, deleted = set(tree), set()
    for v in range(versions):
        if v:
            names = sorted(tree)
            changed, deleted = set(), set()
            for name in rng.sample(names, max(1, len(names) * 8 // 100)):
                for _ in range(rng.randint(1, 4)):
                    tree[name] = _edit(rng, text, tree[name])
                changed.add(name)
            for name in rng.sample(names, max(1, len(names) // 200)):
                del tree[name]
                changed.discard(name)
                deleted.add(name)
            for j in range(max(1, files // 100)):
                name = f"pkg{rng.randrange(17):02d}/new/v{v:02d}_{j:04d}.py"
                tree[name] = text(rng.randint(200, 40_000))
                changed.add(name)
        for name in deleted:
            (work / name).unlink()
        for name in sorted(changed):
            p = work / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(tree[name])
        yield v, sorted(changed), sorted(deleted)


def edited_pair(a: Path, b: Path, size: int, seed: int, edits: int = 8) -> tuple[Path, Path]:
    """``a``: ``size`` random bytes. ``b``: ``a`` with ``edits`` inserts and overwrites of
    1 B to 64 KiB spread over the file."""
    random_file(a, size, seed)
    rng = random.Random(seed)
    data = bytearray(a.read_bytes())
    for k in range(edits):
        pos = rng.randrange(len(data))
        piece = rng.randbytes(rng.randint(1, 64 * 1024))
        if k % 2:
            data[pos:pos + len(piece)] = piece  # overwrite
        else:
            data[pos:pos] = piece  # insert
    b.write_bytes(data)
    return a, b


def small_files(root: Path, n: int, seed: int, folders: int = 100) -> int:
    """``n`` files of 1-64 KiB of random bytes in ``folders`` x 4 folders; returns the bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        d = root / f"d{i % folders:03d}" / f"s{(i // folders) % 4}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 64 * 1024)
        (d / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def foldered_files(root: Path, n: int, seed: int, per_folder: int = 1000, sizes: tuple[int, int] = (100, 2048)) -> int:
    """``n`` files of random bytes, ``sizes`` bytes each (inclusive), ``per_folder`` to a
    folder (``d000/f000000.bin`` ...); returns the bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        d = root / f"d{i // per_folder:03d}"
        if i % per_folder == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(*sizes)
        (d / f"f{i:06d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
