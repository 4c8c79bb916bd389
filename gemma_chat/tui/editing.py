"""Safe editing (Ctrl+O) and regenerating (Ctrl+R) of any message: what they take the
place of stays on screen, and in the history, until the new version exists.

Ctrl+O puts a message of yours (the one selected, else the last) into the input and
marks it and what follows; it leaves the screen only when the edited message is sent,
and Esc gives back the view and the draft the input held. A sent edit, or a regenerated
reply, hides the old turns rather than removing them: they come back if the new reply
fails. In the store nothing is replaced: the new message is a sibling of the old one
(another version, see :mod:`gemma_chat.tui.branches`), whose branch keeps what followed
it (see :meth:`gemma_chat.history.session.ConversationSession.begin_edit`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gemma_chat.chat.conversation import Role

if TYPE_CHECKING:
    from textual.widget import Widget

    from gemma_chat.chat.conversation import Conversation, Turn

EDIT_HINT = (
    "Editing a message: Enter sends it as a new version (the old one and what followed it "
    "stay, Alt+Left shows them); Esc cancels."
)
"""Said when Ctrl+O starts an edit."""


def input_text(turn: Turn, template_on: bool) -> str:
    """What a user turn puts back into the input: what was typed while a saved prompt's
    template applies (sending fills it in again), else the text that was sent."""
    return turn.typed if template_on and turn.typed is not None else turn.text


@dataclass
class PendingEdit:
    """An edit started with Ctrl+O and not sent yet.

    Attributes:
        conversation: The conversation it edits (another one on screen makes it stale).
        turns_kept: The turns before the exchange being edited.
        draft: What the input held before Ctrl+O (Esc puts it back).
        widgets: The exchange on screen, marked ``-editing`` meanwhile.
    """

    conversation: Conversation
    turns_kept: int
    draft: str
    widgets: list[Widget] = field(default_factory=list)

    def live(self, conversation: Conversation) -> bool:
        """Whether the edit still applies: same conversation, same exchange on screen."""
        return (
            conversation is self.conversation
            and len(conversation.turns) > self.turns_kept
            and all(widget.is_attached for widget in self.widgets)
        )

    def mark(self, editing: bool) -> None:
        """Show (or stop showing) that the exchange is being edited."""
        for widget in self.widgets:
            widget.set_class(editing, "-editing")


@dataclass
class Replaced:
    """Turns on their way out: hidden while their replacement is generated, removed once
    it exists, shown again if it fails.

    Attributes:
        turns: The conversation's turns replaced.
        widgets: Their widgets (hidden meanwhile).
    """

    turns: list[Turn]
    widgets: list[Widget]

    def hide(self) -> None:
        """Take the turns off the screen, keeping their widgets."""
        for widget in self.widgets:
            widget.remove_class("-editing")
            widget.display = False

    def drop(self) -> None:
        """The replacement exists: the old widgets go."""
        for widget in self.widgets:
            if widget.is_attached:
                widget.remove()  # removed on the next idle; nothing waits for it

    def restore(self, conversation: Conversation) -> None:
        """The replacement failed: the turns come back, on screen and in the
        conversation."""
        conversation.turns.extend(self.turns)
        for widget in self.widgets:
            widget.display = True


class Edits:
    """The streamer's edit and retry bookkeeping: the edit not sent yet, and the turns
    an edit or a retry in flight is replacing."""

    def __init__(self) -> None:
        self._pending: PendingEdit | None = None
        self.replaced: Replaced | None = None
        """Turns an edit or a retry in flight is replacing."""
        self.retrying = False
        """Whether :attr:`replaced` is a reply being regenerated (else an edit's)."""

    def pending(self, conversation: Conversation) -> PendingEdit | None:
        """The edit started with Ctrl+O and not sent yet, if it still applies."""
        edit = self._pending
        if edit is not None and not edit.live(conversation):
            self._pending = edit = None  # another conversation, or the exchange is gone
        return edit

    def start(
        self,
        conversation: Conversation,
        draft: str,
        widgets: list[Widget],
        template_on: bool = False,
        turn: int | None = None,
    ) -> str:
        """Ctrl+O: mark the user message at ``turn`` (default: the last) and what
        follows it as being edited.

        Returns:
            The text to put into the input (that user message; see :func:`input_text`).
        """
        turns = conversation.turns
        kept = len(turns) - (2 if turns[-1].role is Role.MODEL else 1) if turn is None else turn
        self._pending = PendingEdit(conversation, kept, draft, widgets)
        self._pending.mark(True)
        return input_text(turns[kept], template_on)

    def cancel(self, conversation: Conversation) -> str | None:
        """Esc: unmark the exchange. Returns the draft to give back (None: no edit)."""
        edit = self.pending(conversation)
        if edit is None:
            return None
        self._pending = None
        edit.mark(False)
        return edit.draft

    def commit(self, edit: PendingEdit) -> None:
        """The edited message is being sent: the exchange leaves the conversation and
        the screen (hidden until the new reply exists)."""
        self._pending = None
        turns = edit.conversation.turns
        self.replaced = Replaced(turns[edit.turns_kept :], edit.widgets)
        self.retrying = False
        del turns[edit.turns_kept :]
        self.replaced.hide()

    def retry(self, turns: list[Turn], widgets: list[Widget]) -> None:
        """A reply (and what followed it) is being regenerated: hidden until the new one
        exists."""
        self.replaced = Replaced(list(turns), list(widgets))
        self.retrying = True
        self.replaced.hide()

    def finished(self) -> None:
        """The new reply exists: what it replaced leaves the screen for good."""
        replaced, self.replaced = self.replaced, None
        self.retrying = False
        if replaced is not None:
            replaced.drop()

    def failed(self) -> tuple[Replaced | None, bool]:
        """The new reply failed: ``(what it was replacing, whether by a retry)``; the
        caller puts it back."""
        replaced, retrying = self.replaced, self.retrying
        self.replaced, self.retrying = None, False
        return replaced, retrying
