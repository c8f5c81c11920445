"""Names refuse every character that draws nothing (controls, format characters,
default-ignorable code points) and keep the NFC form of the rest."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.errors import InvalidName
from storage.names import is_invisible, validate_name

# the ones an outside probe got accepted, and the rest of Default_Ignorable_Code_Point by kind
INVISIBLE = ["\u061c", "\u200b", "\ufeff", "\u3164", "\u180e", "\u00ad", "\u034f", "\u115f", "\u1160",
             "\u17b4", "\u17b5", "\u180b", "\u180f", "\u200d", "\u2060", "\u2064", "\ufe00", "\ufe0f",
             "\uffa0", "\U000e0001", "\U000e0020", "\U000e0100", "\u2028", "\u2029", "\ud800", "\x7f"]


@pytest.mark.parametrize("c", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_characters_are_refused_anywhere_in_a_name(c):
    for name in (f"a{c}b.txt", f"{c}x", f"x{c}", c):
        with pytest.raises(InvalidName):
            validate_name(name)


def test_visible_names_are_kept_in_nfc():
    assert validate_name("cafe\u0301.txt") == "caf\u00e9.txt"
    for name in ("r\u00e9sum\u00e9.pdf", "\u65e5\u672c\u8a9e", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
                 "a b", "\U0001f600.png"):
        assert validate_name(name) == unicodedata.normalize("NFC", name)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_a_valid_name_never_holds_an_invisible_character(text):
    try:
        name = validate_name(text)
    except InvalidName:
        return
    assert not any(is_invisible(c) for c in name)
    assert name == unicodedata.normalize("NFC", name)
    name.encode("utf-8")  # storable
