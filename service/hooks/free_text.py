"""Text a client wrote, made safe to keep and to print.

A feedback comment is stored for people to read later, in a terminal or a spreadsheet: control
characters (terminal escape sequences among them) and the invisible marks that reorder text
(bidirectional overrides) are dropped before it is stored. What the report prints is escaped
besides, so even a row written by an older version, or by hand, reaches the terminal as inert text.
"""

from __future__ import annotations

import unicodedata

# Line breaks and tabs are a comment's own layout; every other control character goes.
_KEPT_CONTROLS = frozenset("\n\t")
# Marks that change the direction of the text around them (Trojan Source): invisible, and
# able to make a printed line read differently from what it holds.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Longest text one report cell prints; beyond it "...".
REPORT_CELL = 120


def _dropped(character: str) -> bool:
    if character in _KEPT_CONTROLS:
        return False
    return character in _BIDI_CONTROLS or unicodedata.category(character) in ("Cc", "Cs")


def _escaped(character: str) -> str:
    if character.isprintable():
        return character
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, escape: bool = False) -> str:
    """`text` without control and direction marks (to store it); with `escape`, every non-printable
    character written as an escape and the text cut at REPORT_CELL characters (to print it)."""
    if escape:
        shown = "".join(_escaped(character) for character in text[:REPORT_CELL])
        return shown + ("..." if len(text) > REPORT_CELL else "")
    return "".join(character for character in text if not _dropped(character)).strip()
