"""A message sent while the model loads: shown as queued until the model is ready."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gemma_chat.sanitize import visible

QUEUED_NOTE = "queued: sent when the model is ready · Esc cancels"
"""The line under a queued message."""


class QueuedMessage(Static):
    """The queued message, as typed (no markup), with a line saying it waits."""

    def __init__(self, text: str) -> None:
        content = Text(visible(text))
        content.append(f"\n⏳ {QUEUED_NOTE}", style="dim italic")
        super().__init__(content, classes="user-message -queued")
        self.text = text
