"""Figures of the reliability suite: every test records what it did (runs, kills, injected
faults, detected, lost, and its own measures); the pytest summary prints them as one table and
writes them to ``var/reliability/<mode>-latest.json``.

``BLOCKDRIVE_SOAK=1`` (``make soak``) selects the long variants; :func:`scale` picks a count.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

SOAK = os.environ.get("BLOCKDRIVE_SOAK") == "1"
MODE = "soak" if SOAK else "quick"
ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("runs", "kills", "faults", "detected", "lost")

_records: list[dict] = []


def scale(quick: int, soak: int) -> int:
    """``quick`` in CI, ``soak`` under ``make soak``; ``BLOCKDRIVE_SOAK_SCALE`` multiplies both."""
    factor = float(os.environ.get("BLOCKDRIVE_SOAK_SCALE", "1"))
    return max(1, int((soak if SOAK else quick) * factor))


def record(suite: str, **figures) -> None:
    """One row: ``runs``, ``kills``, ``faults`` (injected), ``detected``, ``lost`` where they
    apply, anything else as extra figures (``req_s=...``, ``p99_ms=...``)."""
    _records.append({"suite": suite, **figures})


def records() -> list[dict]:
    return list(_records)


def table(rows: list[dict]) -> list[str]:
    out = [f"{'suite':<34} " + " ".join(f"{c:>9}" for c in COLUMNS) + "  other"]
    for r in rows:
        cells = " ".join(f"{r[c]:>9}" if c in r else f"{'-':>9}" for c in COLUMNS)
        other = ", ".join(f"{k}={v}" for k, v in r.items() if k not in COLUMNS and k != "suite")
        out.append(f"{r['suite']:<34} {cells}  {other}")
    return out


def write(rows: list[dict]) -> Path:
    out = ROOT / "var" / "reliability" / f"{MODE}-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"mode": MODE, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
                               "rows": rows}, indent=1))
    return out
