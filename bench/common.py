"""Helpers shared by the benchmarks: data generation, timing, a results table."""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MiB = 1024 * 1024


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_repeated(path: Path, size: int, unit: int = 8 * MiB, seed: int = 2) -> Path:
    """``size`` bytes made of one random ``unit`` repeated: dedups to about one unit."""
    piece = random.Random(seed).randbytes(unit)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, unit)
            fh.write(piece[:n])
            left -= n
    return path


def timed(fn, repeat: int = 3):
    """Run ``fn`` ``repeat`` times; return (median seconds, last result)."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def drop_caches() -> None:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError:
        pass  # not root: numbers then include the page cache, and the output says so


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def table(rows: list[tuple], headers: tuple) -> str:
    cols = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, cols))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in cols])] + [line(r) for r in rows])
