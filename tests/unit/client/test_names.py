"""The client's name mapping (client/names.py): every server name has one Windows-valid local
name that maps back to it; local names the server would refuse, or that would not come back
as themselves, are refused before anything is sent."""

from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from client.names import DEVICES, QUOTE, NameMap, from_windows, to_windows, windows_like
from client.sync.client import shared_parts

# Windows' rules for a name, written out independently of the mapping
WINDOWS_ILLEGAL = set('<>:"|?*\\/') | {chr(c) for c in range(32)}


def windows_valid(name: str) -> bool:
    stem = name.split(".", 1)[0]
    return (not WINDOWS_ILLEGAL & set(name) and not name.endswith((".", " "))
            and stem.upper().rstrip(" ") not in DEVICES)


@pytest.mark.parametrize("remote, local", [
    ("a:b", "a\uff1ab"),
    ('<>:"|?*', "\uff1c\uff1e\uff1a\uff02\uff5c\uff1f\uff0a"),
    ("trailing.", "trailing\uff0e"),
    ("x\u2420", "x\u2420"),                       # the server refuses a trailing space: not mapped
    ("mid. dle", "mid. dle"),
    ("CON", "CO\uff2e"),
    ("con.txt", "co\uff4e.txt"),
    ("Lpt9.tar.gz", "Lpt\uff19.tar.gz"),
    ("CONSOLE.txt", "CONSOLE.txt"),
    ("NUL .txt", "NU\uff2c .txt"),
    ("COM10", "COM10"),
    ("a\uff1ab", f"a{QUOTE}\uff1ab"),               # the replacement character itself: quoted
    ("CO\uff2e", f"CO{QUOTE}\uff2e"),               # spelt like a mapped device name: quoted
    (f"x{QUOTE}y", f"x{QUOTE}y"),                   # a quote before nothing special stays one
    (f"x{QUOTE}:", f"x{QUOTE}{QUOTE}\uff1a"),
    ("caf\u00e9 \u00e0 l'\u00e9t\u00e9.txt", "caf\u00e9 \u00e0 l'\u00e9t\u00e9.txt"),
])
def test_known_names_map_both_ways(remote, local):
    assert to_windows(remote) == local
    assert from_windows(local) == remote
    assert windows_valid(local)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(list('ab.: <>"|?*') + ["CON", "com1", "Nul", "LP", "T", QUOTE, "\uff1a",
                                                       "\uff0e", "\u2420", "\uff2e", "\uff11", "\u00e9"]),
                min_size=1, max_size=8))
def test_every_server_name_comes_back_and_is_windows_valid(parts):
    remote = "".join(parts)
    assume(remote == remote.strip())  # as the server stores names
    local = to_windows(remote)
    assert from_windows(local) == remote
    assert windows_valid(local), (remote, local)


def test_two_server_names_never_share_a_local_name():
    names = ["a:b", "a\uff1ab", f"a{QUOTE}\uff1ab", f"a{QUOTE}:b", "CON", "CO\uff2e", f"CO{QUOTE}\uff2e",
             "x.", "x\uff0e"]
    assert len({to_windows(n) for n in names}) == len(names)


def test_the_map_follows_the_file_system(monkeypatch):
    monkeypatch.setenv("BLOCKDRIVE_WINDOWS_NAMES", "1")
    assert windows_like() and NameMap().to_local("a?") == "a\uff1f"
    monkeypatch.setenv("BLOCKDRIVE_WINDOWS_NAMES", "0")
    posix = NameMap()
    assert posix.windows is (os.name == "nt")
    posix = NameMap(windows=False)
    assert posix.to_local("a?") == "a?"
    nfd = unicodedata.normalize("NFD", "caf\u00e9")
    assert posix.to_remote(nfd) == "caf\u00e9" and posix.remote_rel(f"{nfd}/x") == "caf\u00e9/x"


def test_local_names_the_server_would_refuse_or_rename_are_refused():
    posix, win = NameMap(windows=False), NameMap(windows=True)
    assert "not a valid name" in posix.refusal("back\\slash.txt")
    assert "not a valid name" in win.refusal("back\\slash.txt")
    assert "not a valid name" in posix.refusal("line\nbreak")
    assert posix.refusal("a:b?") is None and posix.refusal(unicodedata.normalize("NFD", "\u00e9")) is None
    assert win.refusal("a\uff1ab") is None  # comes from "a:b" and goes back to it
    assert "come back" in win.refusal(f"{QUOTE}{QUOTE}")


def test_a_shared_path_is_matched_in_nfc():
    nfd = unicodedata.normalize("NFD", "R\u00e9pertoire")
    assert shared_parts(f"/Shared with me/{nfd}/x") == ["R\u00e9pertoire", "x"]
    assert shared_parts(f"/{nfd}") is None
