"""Small modals for the history: rename a conversation, confirm a deletion, and decide
what to do about an unreadable history file.

Titles and file names are untrusted text: every dialog shows them through
:mod:`gemma_chat.sanitize`, so escape sequences are shown, never obeyed."""

from __future__ import annotations

import re

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from gemma_chat.sanitize import one_line, visible


class RenameScreen(ModalScreen[str | None]):
    """Asks for a new title; returns it, or None when cancelled or left unchanged.

    The input starts with the title made safe to show (:func:`one_line`); saving that
    unchanged returns None, so a title is never rewritten by merely opening the dialog.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="gemma.rename_cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self._title = title
        self._shown = one_line(title)

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static("Rename the conversation", classes="dialog-title")
            yield Input(self._shown, id="rename-input", select_on_focus=True)
            yield Static("", id="rename-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Rename", variant="primary", id="rename-save")
                yield Button("Cancel", id="rename-cancel")

    def on_input_submitted(self) -> None:
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "rename-save":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        """Close without renaming."""
        self.dismiss(None)

    def _save(self) -> None:
        title = " ".join(self.query_one(Input).value.split())
        if not title:
            self.query_one("#rename-error", Static).update("A title cannot be blank.")
            return
        self.dismiss(None if title == " ".join(self._shown.split()) else title)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; the safe answer (No) has the focus."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="gemma.confirm_no"),
        Binding("y", "answer(True)", "Yes", id="gemma.confirm_yes"),
    ]

    def __init__(self, question: str, detail: str, yes: str) -> None:
        """Args: question: The question. detail: What saying yes does. yes: Its button."""
        super().__init__()
        self._question, self._detail, self._yes = question, detail, yes

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static(Text(one_line(self._question)), classes="dialog-title")
            yield Static(Text(visible(self._detail)), classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="error", id="confirm-yes")
                yield Button("Cancel (n)", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        """Answer the question."""
        self.dismiss(yes)


MOVE_ASIDE = "move"
""":class:`CorruptStoreScreen`'s answer: move the file aside and start a new history."""
CONTINUE = "continue"
""":class:`CorruptStoreScreen`'s answer: keep chatting without saving."""


class CorruptStoreScreen(ModalScreen[str]):
    """The history file cannot be read: say which file, and offer to move it aside
    (renamed, never deleted) or to continue without saving. Nothing changes the file
    until the user picks the first, so the focus starts on the second."""

    BINDINGS = [Binding("escape", "answer('continue')", "Continue", id="gemma.corrupt_continue")]

    def __init__(self, path: str, message: str) -> None:
        """Args: path: The file. message: The error (``CorruptStore``'s message)."""
        super().__init__()
        self._path = path
        found = re.search(r"unreadable \((.*)\)\. ", message)
        self._reason = found.group(1) if found else message

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static("The conversation history cannot be read", classes="dialog-title")
            yield Static(Text(one_line(self._path), style="bold"), id="corrupt-path")
            yield Static(Text(one_line(f"SQLite says: {self._reason}.")), classes="dialog-detail")
            yield Static(
                "Moving it aside renames the file (it is kept, never deleted) and starts "
                "a new, empty history. Continuing leaves the file as it is and saves "
                "nothing this session.",
                classes="dialog-detail",
            )
            with Vertical(classes="dialog-choices"):
                yield Button(
                    "Move it aside and start a new history",
                    variant="primary",
                    id=MOVE_ASIDE,
                    compact=True,
                )
                yield Button("Continue without saving", id=CONTINUE, compact=True)

    def on_mount(self) -> None:
        self.query_one(f"#{CONTINUE}", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or CONTINUE)

    def action_answer(self, answer: str) -> None:
        """Pick an answer."""
        self.dismiss(answer)
