"""The attached files, as chips above the input: each file's name and its tokens (the
model's own tokenizer). Pressing a chip (a click, or Enter on it) takes the file off.

The widget renders; what a press or a count means is up to its owner
(:class:`~gemma_chat.tui.attachments.AttachmentTray`), through two callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button

from gemma_chat.sanitize import one_line


@dataclass(frozen=True)
class Chip:
    """What one chip shows."""

    name: str
    size: int
    tokens: int | None


@dataclass(eq=False)  # identity, as for every Message
class AttachmentCounted(Message):
    """A file's tokens were counted (posted by the counting worker)."""

    name: str
    tokens: int


class AttachmentChips(Horizontal):
    """A row of chips; hidden when nothing is attached."""

    DEFAULT_CSS = """
    AttachmentChips { height: auto; display: none; padding: 0 1; }
    AttachmentChips.-visible { display: block; }
    AttachmentChips Button { min-width: 8; height: 1; border: none; margin: 0 1 0 0; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_remove: Callable[[str], None] | None = None
        """Called with a file's name when its chip is pressed."""
        self.on_counted: Callable[[AttachmentCounted], None] | None = None
        """Called with each count a worker posts here."""

    def show(self, chips: Sequence[Chip]) -> None:
        """Show these chips, replacing the ones shown."""
        self.remove_children()
        buttons = []
        for chip in chips:
            count = "… tokens" if chip.tokens is None else f"{chip.tokens:,} tokens"
            # A file name is the user's text, never markup.
            label = Text(f"📎 {one_line(chip.name, 60)} · {count} ✕")
            tip = Text(f"{one_line(chip.name)}: press to take it off")
            buttons.append(Button(label, name=chip.name, compact=True, tooltip=tip))
        self.mount_all(buttons)
        self.set_class(bool(chips), "-visible")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.name is not None and self.on_remove is not None:
            self.on_remove(event.button.name)

    def on_attachment_counted(self, message: AttachmentCounted) -> None:
        message.stop()
        if self.on_counted is not None:
            self.on_counted(message)
