"""The history sidebar: stored conversations, newest first, to open, rename or delete.

Titles are untrusted (an imported conversation's, or a model's words): they are shown
through :func:`gemma_chat.sanitize.one_line`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gemma_chat.sanitize import one_line

NEW_ID = "new"
"""The option id of the "+ New conversation" item."""
TITLE_WIDTH = 27
"""Characters of a title shown on its one line (the sidebar is 32 columns wide)."""


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when it was longer."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def relative_time(stamp: str, now: datetime | None = None) -> str:
    """A short "when" for an ISO 8601 time: ``just now``, ``5 min ago``, ``3 h ago``,
    ``yesterday``, ``4 days ago``, then the date."""
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    seconds = (now - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    local, today = then.astimezone(), now.astimezone()
    days = (today.date() - local.date()).days
    if days <= 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    if local.year == today.year:
        return local.strftime("%d %b")
    return local.strftime("%d %b %Y")


HINT = "Enter open · n new\nr rename\nd delete · a ask"
"""The keys under the list."""


def _from_ask(record: Any) -> bool:
    return getattr(record, "origin", None) == "ask"


class HistorySidebar(Vertical):
    """Lists stored conversations. The app fills it (:meth:`show`) and handles what the
    user asks for through the messages below; the sidebar itself never touches the
    store."""

    BINDINGS = [
        Binding("n", "new", "New", id="gemma.history_new"),
        Binding("r", "rename", "Rename", id="gemma.history_rename"),
        Binding("d,delete", "delete", "Delete", id="gemma.history_delete"),
        Binding("a", "toggle_ask", "Hide ask", id="gemma.history_ask"),
        Binding("escape", "close", "Close", id="gemma.history_close"),
    ]

    class Opened(Message):
        """The user chose a conversation to open."""

        def __init__(self, conversation_id: int) -> None:
            self.conversation_id = conversation_id
            super().__init__()

    class NewRequested(Message):
        """The user asked for a new conversation."""

    class RenameRequested(Message):
        """The user asked to rename a conversation."""

        def __init__(self, conversation_id: int, title: str) -> None:
            self.conversation_id = conversation_id
            self.title = title
            super().__init__()

    class DeleteRequested(Message):
        """The user asked to delete a conversation (not yet confirmed)."""

        def __init__(self, conversation_id: int, title: str, messages: int) -> None:
            self.conversation_id = conversation_id
            self.title = title
            self.messages = messages
            super().__init__()

    class Closed(Message):
        """The user closed the sidebar from the keyboard."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._records: dict[int, Any] = {}
        self._shown: tuple[list[Any], int | None, str] = ([], None, "")
        self.hide_ask = False
        """Whether conversations started by ``gemma-chat ask`` are left out (``a``)."""

    def compose(self):
        yield Static("History", classes="sidebar-title")
        yield OptionList(id="sidebar-list")
        yield Static(HINT, classes="sidebar-hint")

    def on_resize(self) -> None:
        # Titles are cut to the width: a new width lists them again.
        if self._shown[0]:
            self.show(*self._shown)

    def action_toggle_ask(self) -> None:
        """Hide (or show again) the conversations ``gemma-chat ask`` started."""
        self.hide_ask = not self.hide_ask
        self.show(*self._shown)

    @property
    def listing(self) -> OptionList:
        """The list of conversations."""
        return self.query_one(OptionList)

    def show(self, records: list[Any], current: int | None, note: str = "") -> None:
        """Fill the list with ``records`` (``ConversationRecord``s, newest first),
        marking ``current``; the highlight stays on the same conversation if it can.

        Args:
            records: The conversations to list.
            current: The id of the conversation on screen, if it is stored.
            note: A line shown instead of the list when there is nothing to list.
        """
        self._shown = (records, current, note)
        hidden = [r for r in records if self.hide_ask and _from_ask(r) and r.id != current]
        records = [record for record in records if record not in hidden]
        shown_hint = f"{HINT}\n{len(hidden)} from ask hidden (a shows)" if hidden else HINT
        self.query_one(".sidebar-hint", Static).update(shown_hint)
        options = self.listing
        keep = self.highlighted_id
        self._records = {record.id: record for record in records}
        # The list's width less its scrollbar (the fixed width before the first layout).
        width = self.listing.size.width - 2 if self.listing.size.width else TITLE_WIDTH + 2
        items = [Option(Text("+ New conversation", style="bold"), id=NEW_ID)]
        now = datetime.now(timezone.utc)
        for record in records:
            mark = "● " if record.id == current else "  "
            # One line each, cut with an ellipsis: the sidebar is narrow in a small window.
            line = Text(mark + shorten(one_line(record.title), width - 2))
            count = record.message_count
            when = relative_time(record.updated_at, now)
            origin = "ask · " if _from_ask(record) else ""
            detail = f"{origin}{when} · {count} message{'s' if count != 1 else ''}"
            line.append("\n  " + shorten(detail, width - 2), style="dim")
            items.append(Option(line, id=str(record.id)))
        if not records and note:
            items.append(Option(Text(note, style="dim italic"), disabled=True))
        options.set_options(items)
        target = keep if keep in self._records else current
        index = options.get_option_index(str(target)) if target in self._records else 0
        options.highlighted = index

    @property
    def highlighted_id(self) -> int | None:
        """The id of the highlighted conversation (None on "+ New" or nothing)."""
        option = self.listing.highlighted_option
        if option is None or option.id in (None, NEW_ID):
            return None
        return int(option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id == NEW_ID:
            self.post_message(self.NewRequested())
        elif event.option_id is not None:
            self.post_message(self.Opened(int(event.option_id)))

    def action_new(self) -> None:
        """Start a new conversation."""
        self.post_message(self.NewRequested())

    def action_rename(self) -> None:
        """Rename the highlighted conversation."""
        record = self._records.get(self.highlighted_id or -1)
        if record is not None:
            self.post_message(self.RenameRequested(record.id, record.title))

    def action_delete(self) -> None:
        """Delete the highlighted conversation (the app asks first)."""
        record = self._records.get(self.highlighted_id or -1)
        if record is not None:
            self.post_message(self.DeleteRequested(record.id, record.title, record.message_count))

    def action_close(self) -> None:
        """Close the sidebar."""
        self.post_message(self.Closed())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a reply streams, Esc belongs to the app: it stops the reply.
        return not (action == "close" and getattr(self.app, "generating", False))
