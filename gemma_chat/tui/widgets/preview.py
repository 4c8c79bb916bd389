"""How much of a huge message the chat shows, and the request to see the whole of it."""

from __future__ import annotations

from textual.message import Message

PREVIEW_CHARS = 16_000
"""A message longer than this is shown by its beginning, with a way to see the rest.
Measured (Textual 8, the app's width): Markdown renders 16k characters of prose in about
0.2 s, but a 60 MB message froze the app for minutes and even 1 MB took 7 s."""
PREVIEW_LINES = 200
"""Nor more lines than this: Markdown lists and small code blocks cost per block (on this
shared 2-core machine, 100 list items rendered in about 1 s, 200 in 2 s, 400 in 7 s)."""


def preview(text: str) -> str | None:
    """The beginning of a message too long to render at once: at most ``PREVIEW_CHARS``
    characters and ``PREVIEW_LINES`` lines, cut at a line end when one is near.

    Returns:
        The beginning, or None when the text is short enough to show whole.
    """
    head = text[: PREVIEW_CHARS + 1]  # never scans more than this of a huge text
    lines = head.split("\n", PREVIEW_LINES)
    if len(text) <= PREVIEW_CHARS and len(lines) <= PREVIEW_LINES:
        return None
    if len(lines) > PREVIEW_LINES:
        return "\n".join(lines[:PREVIEW_LINES])
    head = head[:PREVIEW_CHARS]
    cut = head.rfind("\n")
    return head[:cut] if cut >= PREVIEW_CHARS // 2 else head


class WholeTextRequested(Message):
    """The user asked for the whole text of a message shown in part."""

    def __init__(self, text: str, what: str) -> None:
        """Args: text: The whole message. what: "message" or "reply"."""
        self.text = text
        self.what = what
        super().__init__()
