"""The whole text of a message too long to render at once, as plain text, one part at a
time (the chat shows such a message's beginning; see ``widgets.preview.preview``).

A part is at most ``PART_CHARS`` characters or ``PART_LINES`` lines, so showing one
costs the same for a 60 MB message as for a 60 kB one; parts are found as the reader
pages, never all at once.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gemma_chat.sanitize import visible

PART_CHARS = 16_000
"""The most characters of one part."""
PART_LINES = 400
"""The most lines of one part."""


def part_end(text: str, start: int) -> int:
    """Where the part of ``text`` that begins at ``start`` ends: after ``PART_LINES``
    lines or ``PART_CHARS`` characters, at a line end when one is near the limit."""
    limit = min(len(text), start + PART_CHARS)
    pos = start
    for _ in range(PART_LINES):
        found = text.find("\n", pos, limit)
        if found < 0:
            break
        pos = found + 1
    else:
        return pos
    if limit < len(text):
        cut = text.rfind("\n", start, limit)
        if cut >= start + PART_CHARS // 2:
            return cut + 1
    return limit


class WholeTextScreen(ModalScreen[None]):
    """Pages through a long message as plain text (no Markdown)."""

    DEFAULT_CSS = """
    WholeTextScreen { align: center middle; }
    #whole-body {
        width: 95%;
        height: 95%;
        padding: 0 1;
        background: $surface;
        border: round $primary;
    }
    #whole-title { text-style: bold; }
    #whole-scroll { height: 1fr; }
    #whole-buttons { height: auto; }
    #whole-buttons Button { margin-right: 2; }
    """

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="gemma.whole_close"),
        Binding("n,ctrl+pagedown", "part(1)", "Next part", id="gemma.whole_next"),
        Binding("p,ctrl+pageup", "part(-1)", "Previous part", id="gemma.whole_previous"),
    ]

    def __init__(self, text: str, what: str = "message") -> None:
        """Args: text: The whole message. what: "message" or "reply", for the title."""
        super().__init__()
        self.text = text
        self.what = what
        self._starts = [0]  # where each part found so far begins
        self._part = 0

    def compose(self):
        with Vertical(id="whole-body"):
            yield Static(id="whole-title")
            with VerticalScroll(id="whole-scroll"):
                yield Static(id="whole-text")
            with Horizontal(id="whole-buttons"):
                yield Button("← Previous part (p)", id="whole-previous", compact=True)
                yield Button("Next part (n) →", id="whole-next", compact=True)
                yield Button("Close (Esc)", id="whole-close", compact=True)

    def on_mount(self) -> None:
        self._show()

    @property
    def part(self) -> str:
        """The text of the part on screen."""
        start = self._starts[self._part]
        return self.text[start : self._end()]

    def _end(self) -> int:
        if self._part + 1 >= len(self._starts):
            end = part_end(self.text, self._starts[self._part])
            if end < len(self.text):
                self._starts.append(end)
            return end
        return self._starts[self._part + 1]

    def _show(self) -> None:
        start, end = self._starts[self._part], self._end()
        last = end >= len(self.text)
        self.query_one("#whole-title", Static).update(
            f"The whole {self.what}: {len(self.text):,} characters · part {self._part + 1}"
            f"{' (the last)' if last else ''}, characters {start + 1:,}–{end:,}"
        )
        self.query_one("#whole-text", Static).update(Text(visible(self.text[start:end])))
        self.query_one("#whole-scroll", VerticalScroll).scroll_home(animate=False)
        self.query_one("#whole-previous", Button).disabled = self._part == 0
        self.query_one("#whole-next", Button).disabled = last

    def action_part(self, step: int) -> None:
        """Show the next (1) or previous (-1) part."""
        target = self._part + step
        if target < 0:
            return
        self._end()  # finds where the next part starts, if there is one
        if target >= len(self._starts):
            return
        self._part = target
        self._show()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "whole-previous":
            self.action_part(-1)
        elif event.button.id == "whole-next":
            self.action_part(1)
        else:
            self.dismiss(None)

    async def action_dismiss(self, result: None = None) -> None:
        """Close the view."""
        self.dismiss(result)
