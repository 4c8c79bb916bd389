"""A message the user sent, as the conversation view shows it."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from gemma_chat.sanitize import visible
from gemma_chat.tui.widgets.preview import WholeTextRequested, preview


class UserMessage(Static):
    """A message the user sent, shown as typed (no Markdown, no markup).

    A huge one shows its beginning (see :func:`preview`); it can then be focused, and
    Enter or a click opens the whole text."""

    selectable = True  # see MessageSelection
    BINDINGS = [Binding("enter", "show_whole", "Whole message", id="gemma.show_whole")]

    def __init__(self, text: str) -> None:
        shown = preview(text)
        body = Text(visible(text if shown is None else shown))
        if shown is not None:
            more = len(text) - len(shown)
            body.append(
                f"\n\n⋯ {more:,} more characters · Enter or a click shows the whole message",
                style="dim italic",
            )
        self._body = body
        super().__init__(self._content(None), classes="user-message")
        self.text = text
        self.shown_in_part = shown is not None
        # Focusable while selected (Alt+Up, a click); a huge one always (Enter opens it).
        self.can_focus = self.shown_in_part

    def on_blur(self) -> None:
        self.can_focus = self.shown_in_part  # out of the Tab chain once left

    def _content(self, versions: str | None) -> Text:
        content = Text("You", style="bold dim")  # who speaks, not by indentation alone
        if versions is not None:
            content.append(f"  ‹ {versions} ›", style="bold")
        return content + Text("\n") + self._body

    def show_versions(self, label: str | None) -> None:
        """Show which version of the message this is (``2/3``; None: the only one)."""
        self.update(self._content(label))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.shown_in_part if action == "show_whole" else True  # else Enter sends

    def action_show_whole(self) -> None:
        """Open the whole message (only a huge one offers this)."""
        if self.shown_in_part:
            self.post_message(WholeTextRequested(self.text, "message"))

    def on_click(self) -> None:
        self.action_show_whole()
