"""How a name travels between the server and a local file system.

The server stores every name in NFC and accepts names Windows cannot hold: the characters
``< > : " | ? *``, a trailing dot, and the device names (``CON``, ``PRN``, ``AUX``,
``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, with or without an extension, in any case).
On a Windows-like file system (``os.name == "nt"``, or ``BLOCKDRIVE_WINDOWS_NAMES=1``) the
client writes them under a local name and reads them back, the way rclone's ``local``
backend does on Windows:

- each of ``< > : " | ? *`` becomes its FULLWIDTH form (U+FF1C, U+FF1E, U+FF1A, U+FF02,
  U+FF5C, U+FF1F, U+FF0A): ``a:b`` <-> ``a：b``;
- a trailing dot becomes U+FF0E FULLWIDTH FULL STOP (no name on the server ends in a
  space: it refuses leading and trailing whitespace, so that needs no mapping);
- a device name's last character (before the first dot and the spaces before it) becomes
  its FULLWIDTH form: ``CON.txt`` <-> ``COＮ.txt``;
- a server name that already holds one of those replacement characters (or the quote
  character U+201B, where it would be read as quoting) has it quoted with U+201B SINGLE
  HIGH-REVERSED-9 QUOTATION MARK, so ``a：b`` on the server is ``a‛：b`` locally and
  nothing two server names map to is ever the same.

Every server name maps to one local name and back (:func:`to_windows` then
:func:`from_windows` is the identity). A local name that does not come back as itself (one
holding the quote character before a replacement character, say) is reported and skipped
rather than renamed on the server.

Backslash: the server refuses it in a name (it separates paths on Windows), so the client
refuses a local name holding one before sending anything, on every system, as it does every
name the server would refuse (:func:`storage.names.validate_name`).
"""

from __future__ import annotations

import os

from storage.errors import InvalidName
from storage.names import normal, validate_name

WINDOWS_ENV = "BLOCKDRIVE_WINDOWS_NAMES"

FULLWIDTH = 0xFEE0  # added to a printable ASCII character, its FULLWIDTH form
QUOTE = "\u201b"
ILLEGAL = '<>:"|?*'
REPLACE = {c: chr(ord(c) + FULLWIDTH) for c in ILLEGAL}
TRAILING = {".": "\uff0e"}
BACK = {v: k for k, v in {**REPLACE, **TRAILING}.items()}
SPECIAL = set(BACK) | {QUOTE}  # what a quote in front of means "this character as it is"
_NOTHING_SPECIAL = frozenset(ILLEGAL) | SPECIAL
DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))})


def windows_like() -> bool:
    """Whether local names follow Windows' rules: on Windows, or when $BLOCKDRIVE_WINDOWS_NAMES
    is 1 (a share mounted from Windows, a test)."""
    return os.name == "nt" or os.environ.get(WINDOWS_ENV, "").strip() == "1"


def _device(stem: str) -> str | None:
    """``stem`` with its last character back from FULLWIDTH, when that spells a device name."""
    if stem and 0xFF01 <= ord(stem[-1]) <= 0xFF5E:
        plain = stem[:-1] + chr(ord(stem[-1]) - FULLWIDTH)
        if plain.isascii() and plain.upper() in DEVICES:
            return plain
    return None


def _plain(name: str) -> bool:
    """Whether ``name`` is the same on the server and on Windows (most names): nothing to
    replace or quote, no trailing dot, no device name or anything spelt like one."""
    if name.endswith(".") or not _NOTHING_SPECIAL.isdisjoint(name):
        return False
    stem = _stem(name)[0]
    return not (stem.isascii() and stem.upper() in DEVICES) and _device(stem) is None


def _stem(name: str) -> tuple[str, str]:
    """What Windows compares with the device names (the name up to its first dot, without
    the spaces before that dot: ``NUL .txt`` is NUL too), and the rest of ``name``."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return stem, name[len(stem):]


def to_windows(name: str) -> str:
    """The local name of server name ``name`` on a Windows-like file system."""
    if _plain(name):
        return name
    out = []
    for i, c in enumerate(name):
        if c in REPLACE:
            out.append(REPLACE[c])
        elif c in TRAILING and i == len(name) - 1:
            out.append(TRAILING[c])
        elif c in SPECIAL and c != QUOTE:
            out.append(QUOTE + c)
        else:
            out.append(c)
    # A quote of the name's own is doubled where it would otherwise quote what follows it.
    for i, c in enumerate(name):
        if c == QUOTE and i + 1 < len(out) and out[i + 1][0] in SPECIAL:
            out[i] = QUOTE + QUOTE
    local = "".join(out)
    stem, rest = _stem(local)
    if stem.isascii() and stem.upper() in DEVICES:
        return stem[:-1] + chr(ord(stem[-1]) + FULLWIDTH) + rest
    if _device(stem) is not None:  # spelt like a mapped device name already: quoted
        return stem[:-1] + QUOTE + stem[-1] + rest
    if len(stem) > 2 and stem[-2] == QUOTE and _device(stem[:-2] + stem[-1]) is not None:
        return stem[:-1] + QUOTE + stem[-1] + rest  # ...and its quote quoted in turn
    return local


def _unquote(local: str) -> str:
    out, i = [], 0
    while i < len(local):
        c = local[i]
        if c == QUOTE and i + 1 < len(local) and local[i + 1] in SPECIAL:
            out.append(local[i + 1])
            i += 2
            continue
        out.append(BACK.get(c, c))
        i += 1
    return "".join(out)


def from_windows(local: str) -> str:
    """The server name of ``local``, a name on a Windows-like file system."""
    if _plain(local):
        return local
    stem, rest = _stem(local)
    plain = _device(stem)
    if plain is not None:
        return plain + _unquote(rest)
    if len(stem) > 2 and stem[-2] == QUOTE and _device(stem[:-2] + stem[-1]) is not None:
        return stem[:-2] + stem[-1] + _unquote(rest)
    return _unquote(local)


class NameMap:
    """Server names to local names and back, for one local file system (Windows-like or
    not: ``windows`` None asks :func:`windows_like`)."""

    def __init__(self, windows: bool | None = None):
        self.windows = windows_like() if windows is None else windows

    def to_local(self, name: str) -> str:
        return to_windows(name) if self.windows else name

    def to_remote(self, name: str) -> str:
        """The server name of local name ``name``, in NFC (a Mac may list names in NFD)."""
        return normal(from_windows(name) if self.windows else name)

    def admit(self, name: str) -> tuple[str, str | None]:
        """The server name of local name ``name``, and why it cannot go to the server as
        itself (None when it can): the server would refuse it, or it would not come back
        under the same name."""
        remote = self.to_remote(name)
        try:
            validate_name(remote)
        except InvalidName as exc:
            return remote, f"not a valid name on the server: {exc}"
        if self.windows and normal(self.to_local(remote)) != normal(name):
            return remote, f"would come back from the server as {self.to_local(remote)!r}"
        return remote, None

    def refusal(self, name: str) -> str | None:
        """Why local name ``name`` cannot go to the server as itself, or None (see :meth:`admit`)."""
        return self.admit(name)[1]

    def remote_rel(self, rel: str) -> str:
        """A local relative path ("/"-separated) as the server's relative path."""
        return "/".join(self.to_remote(p) for p in rel.split("/"))
