"""The one sanitizer for untrusted text on its way to a terminal.

Model output, server responses, imported conversations, history text and GGUF metadata
are data. A terminal treats some characters as commands: ESC starts sequences that set
the window title (OSC 0), write the clipboard (OSC 52), make links (OSC 8) or clear the
screen (CSI 2J); BEL, backspace and carriage return move or ring; and UTF-8 terminals
may honour the 8-bit C1 forms (U+009B is CSI, U+009D is OSC). Every output boundary
(rich, plain stdout, the TUI's widgets, notifications and tables) passes such text
through :func:`visible` or :func:`one_line` first.

The characters are *shown*, never dropped silently, so a reader can see that the text
carried them:

* C0 controls other than newline and tab, and DEL, become their Unicode control
  pictures: ESC is ``␛``, BEL is ``␇``, a lone CR is ``␍``.
* A C1 control becomes ``␛`` plus its 7-bit form: U+009B (CSI) is ``␛[``, U+009D (OSC)
  is ``␛]``, exactly the sequence it stands for.
* CRLF is a line ending and becomes ``\\n``.
* The bidirectional controls (embeddings, overrides and isolates, U+202A-U+202E and
  U+2066-U+2069, and the marks U+200E, U+200F, U+061C) become their names, ``‹RLO›``:
  a terminal that lays out bidirectional text would otherwise reorder what follows, so
  ``t‹RLO›eulb si yks`` could read as "tsky is blue" (the "Trojan Source" trick).

JSON output is never passed through :func:`visible`: it must stay lossless. JSON escapes
C0 controls itself, but ``json.dumps(..., ensure_ascii=False)`` leaves DEL and the C1
range (and the bidirectional controls) as raw characters, so JSON bound for a terminal
goes through :func:`json_safe`, which writes those as ``\\u`` escapes: the same JSON
value, nothing a terminal acts on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_C0_KEPT = {"\n", "\t"}

# str.translate with a dict runs in C: one pass, and text without controls is cheap.
_TABLE: dict[int, str] = {}
for _code in range(0x20):
    if chr(_code) not in _C0_KEPT:
        _TABLE[_code] = chr(0x2400 + _code)
_TABLE[0x7F] = "\u2421"  # ␡
for _code in range(0x80, 0xA0):
    _TABLE[_code] = "\u241b" + chr(_code - 0x40)
_BIDI = {
    0x061C: "ALM",
    0x200E: "LRM",
    0x200F: "RLM",
    0x202A: "LRE",
    0x202B: "RLE",
    0x202C: "PDF",
    0x202D: "LRO",
    0x202E: "RLO",
    0x2066: "LRI",
    0x2067: "RLI",
    0x2068: "FSI",
    0x2069: "PDI",
}
for _code, _name in _BIDI.items():
    _TABLE[_code] = f"\u2039{_name}\u203a"  # ‹RLO›

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE_RUN = re.compile(r"[ \t\n\r\f\v\u2028\u2029\x85]+")


def has_controls(text: str) -> bool:
    """Whether the text holds a character a terminal would act on (see module doc)."""
    return _CONTROL.search(text) is not None


def visible(text: str) -> str:
    """Text safe for a terminal, keeping its lines: newline and tab stay, every other
    control character is shown as a visible stand-in."""
    if _CONTROL.search(text) is None:
        return text
    return text.replace("\r\n", "\n").translate(_TABLE)


def one_line(text: str, width: int | None = None) -> str:
    """Text safe for one terminal line (a title, a table cell, a model name): runs of
    whitespace, newlines included, become one space, and controls are shown.

    Args:
        text: Untrusted text.
        width: At most this many characters, the last one ``…`` when text was cut.
            Only the beginning of a long text is looked at, so a 60 MB title costs
            no more than a short one.
    """
    if width is None:
        return visible(_WHITESPACE_RUN.sub(" ", text))
    # Controls only grow when shown and whitespace runs only shrink, so (at most)
    # 4x the width of the text is plenty to fill the width.
    shown = visible(_WHITESPACE_RUN.sub(" ", text[: 4 * width + 1]))
    if len(shown) <= width and len(text) <= 4 * width:
        return shown
    return shown[: width - 1] + "…"


class StreamSanitizer:
    """:func:`visible` for text that arrives in pieces (a streamed reply).

    Each piece is made safe on its own; only a CR at the end of a piece is held back,
    so a CRLF split across two pieces still reads as one line ending.
    """

    def __init__(self) -> None:
        self._held_cr = False

    def feed(self, piece: str) -> str:
        """Return the safe form of everything up to the end of ``piece``."""
        if self._held_cr:
            piece = "\r" + piece
            self._held_cr = False
        if piece.endswith("\r"):
            self._held_cr = True
            piece = piece[:-1]
        return visible(piece)

    def finish(self) -> str:
        """Release a CR held at the very end."""
        held, self._held_cr = self._held_cr, False
        return visible("\r") if held else ""


def json_safe(text: str) -> str:
    """JSON text (``json.dumps`` output) with DEL and C1 characters written as ``\\u``
    escapes. They can only occur inside JSON strings, where the escape means the same
    character, so the document is unchanged as JSON (lossless) and safe on a terminal."""
    return _JSON_RAW.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class SafeStream:
    """A text stream (``sys.stdout``, ``sys.stderr``) whose writes pass through
    :class:`StreamSanitizer`: whatever any code prints through it shows its controls.

    The app installs it around both streams for its whole run, so a library that prints
    untrusted text (llama-cpp-python prints a GGUF's chat template while loading, and a
    load can outlive the app's screen) cannot drive the terminal. It claims not to be a
    terminal, so a rich console writing through it (Textual's crash report) prints plain
    text instead of colours that would show as stand-ins.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._sanitizer = StreamSanitizer()

    def write(self, text: str) -> int:
        """Write the safe form of ``text``; returns ``len(text)`` as a stream would."""
        self._stream.write(self._sanitizer.feed(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each line through :meth:`write`."""
        for line in lines:
            self.write(line)

    def isatty(self) -> bool:
        """False: what is written here is plain text, never terminal sequences."""
        return False

    def __getattr__(self, name: str) -> Any:
        # flush, fileno, encoding, ... come from the wrapped stream.
        return getattr(self._stream, name)
