"""Regenerating any reply (Ctrl+R) and editing any message of yours (Ctrl+O): each
makes a new version, and the old one stays on its own branch (a mixin of
:class:`gemma_chat.tui.replies.ReplyStreamer`, which streams the new reply; the
bookkeeping of what is being replaced is :mod:`gemma_chat.tui.editing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gemma_chat.chat.conversation import Role
from gemma_chat.tui.editing import EDIT_HINT, Edits, PendingEdit
from gemma_chat.tui.slash import BUSY_HINT
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from textual.widget import Widget

NOT_SAVING_HINT = (
    "This conversation is not being saved, so what follows that message would be lost: "
    "only the last exchange can be edited or regenerated now."
)


class VersionActions:
    """Ctrl+R and Ctrl+O on the selected message, or the last."""

    _app: Any
    _edits: Edits
    compactor: Any

    @property
    def generating(self) -> bool:
        raise NotImplementedError  # the streamer's

    @property
    def editing(self) -> PendingEdit | None:
        raise NotImplementedError  # the streamer's

    def cancel_edit(self) -> bool:
        raise NotImplementedError  # the streamer's

    async def start(self, compact: bool = True) -> None:
        raise NotImplementedError  # the streamer's

    async def retry(self, turn: int | None = None) -> None:
        """Regenerate a reply: the one at ``turn`` (a question's: the reply to it), else
        the last. The old one, and what followed it, stay as another version."""
        app = self._app
        if self.generating:
            app.notify(BUSY_HINT, severity="warning")
            return
        if app.engine is None or not app.conversation.turns:
            app.notify("Nothing to retry.")
            return
        if app._loading is not None:
            app.notify("A model is loading: retry once it is loaded.", severity="warning")
            return
        self.cancel_edit()
        turns = app.conversation.turns
        at = len(turns) - 1 if turn is None else turn
        if turns[at].role is Role.USER:
            at += 1  # a question selected: its reply (none yet: one is generated)
        if at + 1 < len(turns) and not app.history.saving:
            app.notify(NOT_SAVING_HINT, severity="warning", timeout=8)
            return
        if isinstance(app.focused, UserMessage | ModelReply):
            app.prompt.focus()  # the selected message may be about to leave the screen
        if at < len(turns):
            # Hidden until the new reply exists; a failed retry shows them again.
            self._edits.retry(turns[at:], app.switcher.turn_widgets()[at - self._shown_from() :])
            del turns[at:]
            self.compactor.forget(at)
            app.history.record_retry()
        await self.start()

    def _shown_from(self) -> int:
        return self._app.switcher.hidden_turns

    async def edit(self, turn: int | None = None) -> None:
        """Ctrl+O: put a message of yours into the input to edit it: the one at ``turn``
        (a reply's: its question), else the last. Nothing is removed yet: the exchange
        is marked, sending adds the edit as another version, Esc cancels."""
        app = self._app
        if self.generating:
            app.notify(BUSY_HINT, severity="warning")
            return
        if self.editing is not None:
            app.prompt.focus()
            return
        turns = app.conversation.turns
        if not turns:
            app.notify("Nothing to edit.")
            return
        at = len(turns) - 1 if turn is None else turn
        if turns[at].role is Role.MODEL:
            at -= 1  # a reply selected: the question it answers
        if at < 0:
            app.notify("Nothing to edit.")
            return
        if at + 2 < len(turns) and not app.history.saving:
            app.notify(NOT_SAVING_HINT, severity="warning", timeout=8)
            return
        await app.switcher.reveal(at)  # its question may be above the messages shown
        widgets: list[Widget] = list(app.switcher.turn_widgets()[max(at - self._shown_from(), 0) :])
        template_on = app.saved_prompt is not None
        app.prompt.set_text(
            self._edits.start(app.conversation, app.prompt.text, widgets, template_on, at)
        )
        app.prompt.focus()
        app.notify(EDIT_HINT, timeout=6)
