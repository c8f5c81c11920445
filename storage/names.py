"""Rules for node names and paths.

One form per name: every name is stored, compared and looked up in Unicode NFC
(:func:`normal`), so the composed and decomposed spellings of ``café`` are one name.
:func:`fold_key` is what a case-insensitive file system (Windows, macOS) compares: two live
names in one folder may not share it.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import unicodedata

from .errors import InvalidName

MAX_NAME_BYTES = 255
RESERVED_NAMES = (".", "..")  # this folder and its parent, in every path syntax
SEPARATORS = "/\\"  # path separators (POSIX, Windows): never inside a name
# Bidirectional overrides and isolates let "gpj.exe" display as "exe.jpg".
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
# Characters that draw nothing, so two names that look the same can differ, or a name can look
# empty: controls (Cc), format characters (Cf: U+200B, U+FEFF, U+061C, ...), surrogates (Cs,
# which no UTF-8 store holds) and the line and paragraph separators.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt), for the code points
# outside the categories above: Hangul fillers, Mongolian variation selectors, the combining
# grapheme joiner, Khmer inherent vowels, the variation selectors, and unassigned ones reserved
# as ignorable (renderers already draw them as nothing).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


_IGNORABLE_STARTS = tuple(lo for lo, _ in _DEFAULT_IGNORABLE)  # sorted, for a binary search


def is_invisible(c: str) -> bool:
    """Whether ``c`` is a control, format or default-ignorable code point."""
    if unicodedata.category(c) in _INVISIBLE_CATEGORIES:
        return True
    cp = ord(c)
    i = bisect.bisect_right(_IGNORABLE_STARTS, cp) - 1
    return i >= 0 and cp <= _DEFAULT_IGNORABLE[i][1]


@functools.cache
def invisible_ranges() -> tuple[tuple[int, int], ...]:
    """Every code point :func:`is_invisible` refuses, as sorted ``(first, last)`` ranges: the
    same rule written for a schema (the OpenAPI document's name pattern)."""
    points = {cp for lo, hi in _DEFAULT_IGNORABLE for cp in range(lo, hi + 1)}
    # Planes 0, 1 and 14 hold every control, format and separator character; the others are
    # CJK ideographs, unassigned, or private use (scanning them would triple the time).
    for lo, hi in ((0, 0x1FFFF), (0xE0000, 0xEFFFF)):
        points.update(cp for cp in range(lo, hi + 1) if unicodedata.category(chr(cp)) in _INVISIBLE_CATEGORIES)
    return _ranges(points)


def _ranges(points) -> tuple[tuple[int, int], ...]:
    """Code points as sorted ``(first, last)`` ranges of consecutive ones."""
    out: list[list[int]] = []
    for cp in sorted(points):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return tuple((lo, hi) for lo, hi in out)


@functools.cache
def whitespace_ranges() -> tuple[tuple[int, int], ...]:
    """The code points a name may not start or end with (those ``str.strip`` removes), as
    sorted ``(first, last)`` ranges for a schema. Every one is in the Basic Multilingual
    Plane, so only that is scanned (the whole range of code points costs a quarter second
    at every start)."""
    return _ranges(cp for cp in range(0x10000) if chr(cp).isspace())


def normal(name: str) -> str:
    """``name`` in the one form names are stored and compared in (NFC)."""
    return unicodedata.normalize("NFC", name)


def fold(name: str) -> str:
    """The NFC form of the full Unicode case fold of ``name``'s NFC form: what two names
    equal under case folding share (for ASCII, its lower case)."""
    if name.isascii():
        return name.lower()
    return normal(normal(name).casefold())


def fold_key(name: str) -> str:
    """What two names equal under case folding share (``Report.txt``, ``REPORT.TXT``,
    ``report.txt``; ``Straße`` and ``STRASSE``): the SHA-256, in hex, of :func:`fold`.
    Hashed because a fold may be longer than the name (``ß`` folds to ``ss``), and a fixed
    64 ASCII characters index compactly on every engine."""
    return hashlib.sha256(fold(name).encode("utf-8")).hexdigest()


def validate_name(name: str) -> str:
    """Return the NFC form of a valid node name, or raise InvalidName saying why."""
    if not isinstance(name, str) or name == "":
        raise InvalidName("a name must not be empty")
    name = normal(name)
    if name in RESERVED_NAMES:
        raise InvalidName(f"{name!r} is not a valid name")
    if any(c in SEPARATORS for c in name):
        raise InvalidName(f"a name must not contain a slash: {name!r}")
    # Printable ASCII holds no control, bidirectional, format or invisible character: the
    # scans below (the costly part, for a client listing a large tree) are skipped for it.
    if not (name.isascii() and name.isprintable()):
        _check_characters(name)
    if name != name.strip():
        raise InvalidName("a name must not start or end with whitespace")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidName(f"a name must be at most {MAX_NAME_BYTES} UTF-8 bytes")
    return name


def _check_characters(name: str) -> None:
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidName("a name must not contain control characters (NUL, newline, ...)")
    if any(c in _BIDI_CONTROLS for c in name):
        raise InvalidName("a name must not contain bidirectional control characters")
    bad = next((c for c in name if is_invisible(c)), None)
    if bad is not None:
        raise InvalidName(f"a name must not contain invisible or format characters (U+{ord(bad):04X})",
                          code_point=f"U+{ord(bad):04X}")


def split_path(path: str) -> list[str]:
    """``/a/b/c`` -> ``["a", "b", "c"]``, each part validated."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidName(f"a path must start with '/': {path!r}")
    return [validate_name(p) for p in path.split("/") if p != ""]
