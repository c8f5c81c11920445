"""Rules for node names and paths."""

from __future__ import annotations

import unicodedata

from .errors import InvalidName

MAX_NAME_BYTES = 255
# Bidirectional overrides and isolates let "gpj.exe" display as "exe.jpg".
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def validate_name(name: str) -> str:
    """Return the NFC form of a valid node name, or raise InvalidName saying why."""
    if not isinstance(name, str) or name == "":
        raise InvalidName("a name must not be empty")
    name = unicodedata.normalize("NFC", name)
    if name in (".", ".."):
        raise InvalidName(f"{name!r} is not a valid name")
    if "/" in name or "\\" in name:
        raise InvalidName(f"a name must not contain a slash: {name!r}")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidName("a name must not contain control characters (NUL, newline, ...)")
    if any(c in _BIDI_CONTROLS for c in name):
        raise InvalidName("a name must not contain bidirectional control characters")
    if name != name.strip():
        raise InvalidName("a name must not start or end with whitespace")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidName(f"a name must be at most {MAX_NAME_BYTES} UTF-8 bytes")
    return name


def split_path(path: str) -> list[str]:
    """``/a/b/c`` -> ``["a", "b", "c"]``, each part validated."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidName(f"a path must start with '/': {path!r}")
    return [validate_name(p) for p in path.split("/") if p != ""]
