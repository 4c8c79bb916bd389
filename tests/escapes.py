r"""Hostile terminal sequences, for the tests that prove untrusted text never drives the
terminal (issue 10, item 1).

Each payload is what a hostile model, server, imported file or GGUF could carry. The
tests put :data:`CORPUS` through an output path and assert on the raw bytes a terminal
(a pty) receives: none of :data:`FORBIDDEN` may arrive, and the visible stand-in
:data:`SHOWN` must. Only the payload's own sequences are checked, never every ESC: rich
and Textual write legitimate ones (colours, cursor moves) on a terminal.
"""

from __future__ import annotations

import re

PAYLOADS: dict[str, str] = {
    "osc0_title": "\x1b]0;PWNED-TITLE\x07",
    "osc52_clipboard": "\x1b]52;c;cHduZWQ=\x07",
    "osc8_link": "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "csi_clear": "\x1b[2J",
    "csi_alt_screen": "\x1b[?1049h",
    "csi_mouse": "\x1b[?1000h",
    "dcs": "\x1bPq#0;2;0;0;0\x1b\\",
    "apc": "\x1b_Gf=100;QUFB\x1b\\",
    "c1_csi": "\x9b2J",
    "c1_osc": "\x9d0;C1-TITLE\x07",
    "bel": "ding\x07",
    "backspace": "abc\x08\x08\x08XYZ",
    "lone_cr": "safe\rEVIL",
    # Markdown decodes entities: a control character's must never come back as one.
    "entities": "&#x1b;]0;ENTITY-TITLE&#7; &#155;2J",
    # A link whose target smuggles an OSC 52 (rich renders links as OSC 8).
    "md_link": "[click me](http://evil.example/\x1b]52;c;bGluaw==\x07)",
}

CORPUS = "Hostile text: " + " | ".join(PAYLOADS.values()) + " | end."
"""Every payload in one text (no NUL, no '/' outside the link payloads)."""

FILE_SAFE = "".join(
    PAYLOADS[name]
    for name in ("osc0_title", "osc52_clipboard", "csi_clear", "c1_csi", "c1_osc", "bel")
)
"""The payloads that fit in a file name (no '/')."""

FORBIDDEN: tuple[bytes, ...] = (
    b"\x1b]0;PWNED",
    b"\x1b]52;",
    b"\x1b]8;",  # any OSC 8 link (rich writes \x1b]8;id=NNN;url)
    b"\x1b[2J",
    b"\x1b[?1049h",
    b"\x1b[?1000h",
    b"\x1bPq",
    b"\x1b_G",
    b"\xc2\x9b",  # U+009B (C1 CSI) in UTF-8
    b"\xc2\x9d",  # U+009D (C1 OSC) in UTF-8
    b"\x9b2J",
    b"\x9d0;",
    b"\x07",
    b"\x08",
    b"\rEVIL",
    b"\x1b]0;ENTITY",
    b"\x1b]0;C1",
)
"""Byte sequences from the payloads that must never reach a terminal."""

_TEXTUAL_OWN = (b"\x1b[?1049h", b"\x1b[?1000h", b"\x07", b"\x1b[2J")
# Textual itself switches to the alternate screen, turns mouse tracking on, clears the
# screen and ends one of its own queries with BEL: those are legitimate in the app.
TUI_FORBIDDEN: tuple[bytes, ...] = (
    *(pattern for pattern in FORBIDDEN if pattern not in _TEXTUAL_OWN),
    b"PWNED-TITLE\x07",
    b"C1-TITLE\x07",
)
""":data:`FORBIDDEN` for the app, which writes some of those sequences itself."""

SHOWN = "\u241b"
"""``␛``, the visible stand-in for ESC."""


def leaked(data: bytes, patterns: tuple[bytes, ...] = FORBIDDEN) -> list[bytes]:
    """The forbidden patterns found in raw terminal bytes."""
    return [pattern for pattern in patterns if pattern in data]


def strip_legit(data: bytes) -> bytes:
    """Raw terminal bytes without the pty's own CR before LF (onlcr)."""
    return re.sub(rb"\r+\n", b"\n", data)
