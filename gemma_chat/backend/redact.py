"""Keeping the API key out of everything a server sends that gemma-chat shows.

A server can echo the ``Authorization`` header back: in a 401 body ("invalid key
Bearer sk-..."), a redirect's address, an error mid-reply, a model id, or reply text.
The remote backend passes all of it through one :class:`Redactor` before it leaves the
backend (errors, model names, the streamed reply), so the key reaches no terminal, app
notification, history file or JSON output.

Besides the key as typed, the forms a server's escaping can give it are matched too:
JSON (``\\/``), HTML entities and percent-encoding.
"""

from __future__ import annotations

import html
import json
import re
from urllib.parse import quote

REDACTED = "[redacted]"
"""What stands in for the key."""

MIN_STREAM_KEY = 8
"""Shorter keys are redacted in errors and model names, not in reply text: a key such
as ``test`` or ``EMPTY`` (common for local servers) is an ordinary word there."""


class Redactor:
    """Replaces every spelling of one API key in server text with :data:`REDACTED`.

    With no key (or an empty one) text passes unchanged.
    """

    def __init__(self, key: str | None) -> None:
        self.key = key or ""
        in_json = json.dumps(self.key)[1:-1]
        forms = {self.key, in_json, in_json.replace("/", "\\/"), self.key.replace("/", "\\/")}
        forms |= {html.escape(self.key), quote(self.key, safe="")}
        forms.discard("")
        # Longest first: one form may contain another.
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )

    def text(self, text: str) -> str:
        """``text`` with the key redacted."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def stream(self) -> StreamRedactor:
        """A redactor for text that arrives in pieces."""
        return StreamRedactor(self.key if len(self.key) >= MIN_STREAM_KEY else "")


class StreamRedactor:
    """:meth:`Redactor.text` for a streamed reply, whose pieces may split the key.

    The end of the text that could be the start of the key is held back until the next
    piece shows whether it is; :meth:`flush` releases it at the end.
    """

    def __init__(self, key: str) -> None:
        self._key = key
        self._held = ""

    def feed(self, piece: str) -> str:
        """The safe text up to the end of ``piece``, less what is held back."""
        key = self._key
        if not key:
            return piece
        text = (self._held + piece).replace(key, REDACTED)
        keep = 0
        for size in range(min(len(key) - 1, len(text)), 0, -1):
            if key.startswith(text[-size:]):
                keep = size
                break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Release what is held back (it was not the key)."""
        held, self._held = self._held, ""
        return held
