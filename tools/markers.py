"""Generated regions inside Markdown files.

A region is ``<!-- KIND:NAME -->`` … ``<!-- /KIND -->`` on lines of their own; everything between
the two lines belongs to the generator and is replaced whole, everything outside is prose that a
person writes. The markers themselves are kept, so a file can be regenerated any number of times.
"""

from __future__ import annotations

import re
from pathlib import Path



def _pattern(kind: str) -> re.Pattern[str]:
    return re.compile(rf"^(<!-- {kind}:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(^<!-- /{kind} -->$)",
                      re.MULTILINE | re.DOTALL)


def names(text: str, kind: str) -> list[str]:
    """The region names of ``kind`` in ``text``, in order."""
    return [m["name"] for m in _pattern(kind).finditer(text)]


def replace(text: str, kind: str, bodies: dict[str, str]) -> str:
    """``text`` with the body of every ``kind`` region named in ``bodies`` replaced.

    A body is written with exactly one newline at its end. A region not in ``bodies`` is left
    as it is; a name in ``bodies`` with no region is an error, so a renamed marker is noticed.
    """
    missing = set(bodies) - set(names(text, kind))
    if missing:
        raise KeyError(f"no <!-- {kind}:NAME --> region for {', '.join(sorted(missing))}")

    def body(m: re.Match[str]) -> str:
        if m["name"] not in bodies:
            return m[0]
        return m[1] + bodies[m["name"]].rstrip("\n") + "\n" + m[4]

    return _pattern(kind).sub(body, text)



def save(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` when it differs from what is there, and say so."""
    if text != path.read_text():
        path.write_text(text)
        print(f"rewrote {path}")
