"""The CLI's one way to tell the user something on stderr."""

from __future__ import annotations

import sys

from gemma_chat.sanitize import one_line


def notify(message: str) -> None:
    """Print one diagnostic line on stderr, prefixed ``gemma-chat:``.

    stdout belongs to answers and listings. The message may quote a model's metadata,
    a server's or the Hub's text, or a stored title: controls are shown, never obeyed.
    """
    print(f"gemma-chat: {one_line(message)}", file=sys.stderr, flush=True)
