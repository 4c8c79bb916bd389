"""Versions of a message in the app: the "‹ 2/3 ›" on messages that have other versions
(edits of a question, other replies to it), selecting a message, and switching to
another version (a collaborator the app owns).

The conversation on screen is one branch of the stored tree. Switching shows the newest
branch through the chosen version in its place (see
:meth:`ConversationSwitcher.show_branch`), and the next message continues it. Nothing
here writes a message: editing and regenerating (:mod:`gemma_chat.tui.editing`) add the
versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gemma_chat.history.branches import Versions, turn_versions
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from textual.widget import Widget

    from gemma_chat.tui.conversations import ConversationSwitcher
    from gemma_chat.tui.history import HistoryKeeper
    from gemma_chat.tui.widgets.prompt_input import PromptInput

REVEAL_LIMIT = 80
"""The most earlier messages a switch mounts to show the message switched."""

NO_VERSIONS = (
    "This message has no other version yet: Ctrl+O on a message of yours edits it, "
    "Ctrl+R on a reply regenerates it, and each keeps the old one."
)


class BranchHost(Protocol):
    """What :class:`BranchSwitcher` uses of the app."""

    history: HistoryKeeper
    switcher: ConversationSwitcher

    @property
    def generating(self) -> bool: ...
    @property
    def focused(self) -> Widget | None: ...
    @property
    def prompt(self) -> PromptInput: ...
    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None: ...


class BranchSwitcher:
    """Shows each message's versions and switches between them."""

    def __init__(self, app: BranchHost) -> None:
        self._app = app
        self._versions: list[Versions | None] = []

    def refresh(self) -> None:
        """Recompute every turn's versions and show them on the messages on screen
        (after the conversation is shown, and after a message is stored)."""
        app = self._app
        store, cid = app.history.store, app.history.conversation_id
        turns = app.history.session.turn_ids
        try:
            links = store.links(cid) if store is not None and cid is not None else []
        except Exception:  # a store error is reported by the writes; the labels can wait
            links = []
        self._versions = turn_versions(links, turns)
        switcher = app.switcher
        for offset, widget in enumerate(switcher.turn_widgets()):
            index = switcher.hidden_turns + offset
            versions = self._versions[index] if index < len(self._versions) else None
            widget.show_versions(versions.label if versions is not None else None)

    def selected(self) -> int | None:
        """The turn of the message selected (focused), if one is."""
        focused = self._app.focused
        if not isinstance(focused, UserMessage | ModelReply):
            return None
        switcher = self._app.switcher
        shown = switcher.turn_widgets()
        return switcher.hidden_turns + shown.index(focused) if focused in shown else None

    def select(self, step: int) -> None:
        """Alt+Up / Alt+Down: select the message above or below (from the input, the
        last one); below the last, the input again."""
        app = self._app
        shown = app.switcher.turn_widgets()
        index = self.selected()
        at = len(shown) if index is None else index - app.switcher.hidden_turns
        at += step
        if 0 <= at < len(shown):
            self.select_widget(shown[at])
        elif at >= len(shown):
            app.prompt.focus()

    @staticmethod
    def select_widget(widget: UserMessage | ModelReply) -> None:
        """Select (focus) a message; it leaves the focus chain again once left (Tab from
        the input never stops on messages)."""
        widget.can_focus = True
        widget.focus()
        widget.scroll_visible(animate=False)

    async def switch(self, step: int) -> None:
        """Show another version of the selected message (with none selected, of the
        last message that has versions): ``step`` on (1) or back (-1)."""
        app = self._app
        self.refresh()  # the turns on screen may have changed since the labels were made
        found = self._versions
        index = self.selected()
        if index is None:
            index = next((i for i in reversed(range(len(found))) if found[i]), None)
        versions = found[index] if index is not None and index < len(found) else None
        if index is None or versions is None:
            app.notify(NO_VERSIONS, timeout=6)
            return
        if not await app.switcher.show_branch(versions.step(step)):
            return
        if app.switcher.hidden_turns - index > REVEAL_LIMIT:
            # Mounting hundreds of messages at once would freeze the screen for seconds.
            app.notify(
                f"Version {versions.step_label(step)} is shown, {app.switcher.hidden_turns - index}"
                ' messages up: "Show earlier messages" at the top reaches it.',
                timeout=8,
            )
            return
        widget = await app.switcher.reveal(index)
        if widget is not None:
            self.select_widget(widget)
