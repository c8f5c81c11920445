"""Figures for people: byte counts as "1.2 GiB", ratios as "1.24x", durations as "3.4s".

What the jobs commands print in the terminal (``--json`` keeps the raw numbers). A figure's
kind is read from its stats key: ``*bytes*`` is a size, ``*ratio*`` a ratio, ``*seconds`` a
duration; other numbers are counts.
"""

from __future__ import annotations

import json

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
#: Lists longer than this are counted, not printed (``--json`` has them in full).
LIST_SHOWN = 3


def size(n: float, digits: int = 1) -> str:
    """``n`` bytes in binary units: ``512 B``, ``1.2 GiB``."""
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.{digits}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the last unit takes any size")


def label(key: str) -> str:
    """A stats key as words: ``bytes_freed`` -> ``bytes freed``."""
    return key.replace("_", " ")


def figure(key: str, value) -> str:
    """One stats value as a person reads it, its kind taken from ``key``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if "bytes" in key:
            return size(value)
        if "ratio" in key:
            return f"{value:.2f}x"
        if key.endswith("seconds"):
            return f"{value:.1f}s"
        return f"{value:,d}" if isinstance(value, int) else f"{value:.3g}"
    if isinstance(value, list):
        if len(value) > LIST_SHOWN:
            return f"{len(value):,d} entries (--json lists them)"
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)


def lines(stats: dict, indent: str = "  ") -> list[str]:
    """``stats`` as aligned ``label  value`` lines, a nested mapping indented below its key;
    empty lists and mappings are left out."""
    shown = {k: v for k, v in stats.items() if not (isinstance(v, (list, dict)) and not v)}
    width = max((len(label(k)) for k in shown), default=0)
    out = []
    for key, value in shown.items():
        if isinstance(value, dict):
            out.append(f"{indent}{label(key)}:")
            out += lines(value, indent + "  ")
        else:
            out.append(f"{indent}{label(key):<{width}}  {figure(key, value)}")
    return out
