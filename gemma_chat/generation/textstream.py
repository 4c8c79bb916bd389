"""Turning streamed token pieces into text that is safe to show.

Two stages, both incremental:

* :class:`Utf8Stream` joins byte pieces into text. A multi-byte character split across
  byte tokens (CJK, emoji) is held until it completes, so U+FFFD never appears for a
  character that completes later.
* :class:`MarkerFilter` watches for the turn markers spelled out as plain text
  (``<end_of_turn>`` split into ordinary pieces). Text that might be the start of a
  marker is held back, and released as soon as it cannot be one. The marker itself is
  never released.
"""

from __future__ import annotations

import codecs

from gemma_chat.chat.tokenizer import END_OF_TURN, START_OF_TURN

TEXT_MARKERS = (END_OF_TURN, START_OF_TURN)


class Utf8Stream:
    """An incremental UTF-8 decoder for token pieces."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that is now complete."""
        return self._decoder.decode(piece)

    def finish(self) -> str:
        """End the stream. An unfinished character at the very end is dropped."""
        pending, _ = self._decoder.getstate()
        self._decoder.reset()
        return "" if pending else self._decoder.decode(b"", final=True)


class MarkerFilter:
    """Holds back text that may be a turn marker spelled as text, and finds markers."""

    def __init__(self, markers: tuple[str, ...] = TEXT_MARKERS) -> None:
        self._markers = markers
        self._held = ""
        self.found: str | None = None

    def feed(self, text: str) -> str:
        """Add text; return the part that is safe to show now.

        After a marker is found, :attr:`found` names it and nothing more is returned.
        """
        if self.found is not None:
            return ""
        buffer = self._held + text
        hits = [(buffer.find(m), m) for m in self._markers if m in buffer]
        if hits:
            index, self.found = min(hits)
            self._held = ""
            return buffer[:index]
        keep = self._longest_marker_prefix_suffix(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """Release held text at the end of a reply that stopped for another reason."""
        held, self._held = self._held, ""
        return "" if self.found is not None else held

    @property
    def holding(self) -> bool:
        """Whether some text is held back right now."""
        return bool(self._held)

    def _longest_marker_prefix_suffix(self, buffer: str) -> int:
        best = 0
        for marker in self._markers:
            for size in range(min(len(marker) - 1, len(buffer)), best, -1):
                if buffer.endswith(marker[:size]):
                    best = size
                    break
        return best
