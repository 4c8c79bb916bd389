"""Switching conversations (an App mixin): new, resume, the history sidebar, rename,
delete and full-text search. Recording is :mod:`gemma_chat.tui.history`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.timer import Timer
    from textual.widget import Widget

    from gemma_chat.config.settings import Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.generation.events import ReplyDone
    from gemma_chat.history.store import MessageRecord, SearchHit
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo
    from gemma_chat.tui.widgets.chat_log import ChatLog
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar

from textual.widgets import Button

from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.errors import GemmaChatError
from gemma_chat.history.recording import restore_params
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import to_conversation
from gemma_chat.tui.history import AppBase, GuardedStore, failure_text
from gemma_chat.tui.kv_resume import KVResumeService
from gemma_chat.tui.screens.dialogs import ConfirmScreen
from gemma_chat.tui.slash import BUSY_HINT, SlashRouter
from gemma_chat.tui.widgets.chat_log import ModelReply, UserMessage
from gemma_chat.tui.widgets.sidebar import HistorySidebar

SIDEBAR_LIMIT = 500
"""The most conversations the sidebar lists (search finds the older ones)."""
FOUND_S = 6.0
"""How long a message found by search stays highlighted."""
SHOWN_TURNS = 40
"""Turns of a resumed conversation shown at first; a button shows more."""


class ConversationSwitching(AppBase):
    """New, resume, sidebar and search; the state lives in :class:`HistorySupport`."""

    settings: Settings
    conversation: Conversation
    store: GuardedStore | None
    session: ConversationSession
    kv: KVResumeService
    slash: SlashRouter
    engine: Engine | None
    model_info: ModelInfo | RemoteModelInfo | None
    last_done: ReplyDone | None
    _history_note: str
    _found_timer: Timer | None
    _hidden_turns: int

    if TYPE_CHECKING:  # the app's, declared read-only as they are there

        @property
        def generating(self) -> bool: ...
        @property
        def chat(self) -> ChatLog: ...
        @property
        def prompt(self) -> PromptInput: ...
        @property
        def status(self) -> StatusBar: ...
        @property
        def conversation_id(self) -> int | None: ...
        def schedule_count(self) -> None: ...
        def restore_conversation_state(self) -> None: ...
        def _leaving_conversation(self) -> None: ...
        def _begin(self, conversation_id: int | None, messages: list[MessageRecord]) -> None: ...

    # ------------------------------------------------------------------- resuming

    async def action_new(self, keep_settings: bool = False) -> None:
        """Start a new conversation (``keep_settings``: keep the system prompt and
        parameters, as /clear does)."""
        if self.generating:
            self.notify(BUSY_HINT, severity="warning")
            return
        self._leaving_conversation()
        system = self.conversation.system if keep_settings else self.settings.system
        self.conversation = Conversation(system=system)
        if not keep_settings:
            self.slash.set_params(self.settings.sampling, self.settings.repeat_guard)
        self._begin(None, [])
        await self._show_conversation()
        self._refresh_sidebar()

    async def resume_conversation(
        self, conversation_id: int, message_id: int | None = None
    ) -> bool:
        """Open a stored conversation: its messages, system prompt and parameters.

        Args:
            conversation_id: The stored conversation.
            message_id: A stored message to scroll to and highlight (a search result).

        Returns:
            Whether it is on screen now.
        """
        if self.store is None:
            self.notify(self._history_note or "The history is not available.")
            return False
        if conversation_id != self.conversation_id:
            if self.generating:
                self.notify(BUSY_HINT, severity="warning")
                return False
            # Token ids only for the model file that generated them; before a model is
            # loaded there is none, and the load gives them back (_history_model_loaded).
            sha256 = getattr(self.model_info, "sha256", None) if self.engine else None
            try:
                record = self.store.get(conversation_id)
                messages = self.store.messages(conversation_id)
                conversation = to_conversation(record, messages, sha256)
                params = restore_params(record, self.settings.sampling, self.settings.repeat_guard)
            except Exception as exc:  # a store error or a damaged conversation
                self.notify(
                    f"Could not open conversation {conversation_id}: {failure_text(exc)}",
                    severity="error",
                    markup=False,
                )
                return False
            self._leaving_conversation()
            self.conversation = conversation
            self.slash.set_params(*params)
            self._begin(conversation_id, messages)
            await self._show_conversation()
            self.restore_conversation_state()  # its saved KV state, in the background
        if message_id is not None:
            await self._jump_to(message_id)
        self._refresh_sidebar()
        return True

    async def _show_conversation(self) -> None:
        """Put the conversation on screen: its last ``SHOWN_TURNS`` turns, replies
        rendered whole as Markdown, and a button for the earlier ones."""
        chat = self.chat
        await chat.remove_children()
        self.last_done = None
        self.status.set_speed("")
        self._hidden_turns = len(self.conversation.turns)
        await self._show_earlier(SHOWN_TURNS)
        if self.conversation.pending_user is not None:
            await chat.add_notice(
                "This message has no reply (gemma-chat stopped while replying): Ctrl+R "
                "generates one, Ctrl+O puts it back into the input."
            )
        chat.anchor()
        self.schedule_count()

    async def _show_earlier(self, count: int) -> None:
        """Mount up to ``count`` more of the turns not shown yet, above the others.

        Mounting hundreds of Markdown replies at once would freeze the screen for
        seconds, so a long conversation opens on its end."""
        chat = self.chat
        end = self._hidden_turns
        start = max(0, end - count)
        widgets: list[Widget] = [
            UserMessage(turn.text)
            if turn.role is Role.USER
            else ModelReply(turn.text, turn.stop_reason)
            for turn in self.conversation.turns[start:end]
        ]
        self._hidden_turns = start
        for old in chat.query("#earlier"):
            await old.remove()
        if start:
            widgets.insert(
                0, Button(f"↑ Show {start} earlier messages", id="earlier", compact=True)
            )
        if widgets:
            first = next(iter(chat.children), None)
            await chat.mount_all(widgets, before=first)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "earlier":
            event.stop()
            shown_first = self._turn_widgets()[0]
            await self._show_earlier(SHOWN_TURNS)
            self.call_after_refresh(
                self.chat.scroll_to_widget, shown_first, animate=False, top=True
            )

    def _turn_widgets(self) -> list[UserMessage | ModelReply]:
        return [w for w in self.chat.children if isinstance(w, UserMessage | ModelReply)]

    async def _jump_to(self, message_id: int) -> None:
        """Scroll to the turn holding a stored message and highlight it."""
        turns = len(self.conversation.turns)
        if not turns:
            return
        index = self.session.turn_of(message_id)
        index = turns - 1 if index is None else index
        index = min(index, turns - 1)
        if index < self._hidden_turns:  # with a few turns before it, for context
            await self._show_earlier(self._hidden_turns - max(0, index - 4))
        widget = self._turn_widgets()[index - self._hidden_turns]
        for old in self.chat.query(".-found"):
            old.remove_class("-found")
        widget.add_class("-found")
        self.call_after_refresh(self.chat.scroll_to_center, widget, animate=False)
        if self._found_timer is not None:
            self._found_timer.stop()
        self._found_timer = self.set_timer(FOUND_S, lambda: widget.remove_class("-found"))

    # --------------------------------------------------------- sidebar and search

    @property
    def sidebar(self) -> HistorySidebar:
        """The history sidebar."""
        return self.query_one(HistorySidebar)

    def action_history(self) -> None:
        """Show or hide the history sidebar."""
        sidebar = self.sidebar
        if sidebar.has_class("-open"):
            sidebar.remove_class("-open")
            self.prompt.focus()
        else:
            sidebar.add_class("-open")
            self._refresh_sidebar()
            sidebar.listing.focus()

    def _refresh_sidebar(self) -> None:
        found = self.query(HistorySidebar)
        if not found or not found.first().has_class("-open"):
            return
        sidebar = found.first()
        if self.store is None:
            sidebar.show([], None, self._history_note or "The history is not available.")
            return
        try:
            records = self.store.conversations(limit=SIDEBAR_LIMIT)
        except GemmaChatError as exc:
            sidebar.show([], None, str(exc))
            return
        sidebar.show(records, self.conversation_id, "No conversations yet.")

    async def on_history_sidebar_opened(self, message: HistorySidebar.Opened) -> None:
        await self.resume_conversation(message.conversation_id)

    async def on_history_sidebar_new_requested(self) -> None:
        await self.action_new()
        self.prompt.focus()

    def on_history_sidebar_closed(self) -> None:
        self.sidebar.remove_class("-open")
        self.prompt.focus()

    def on_history_sidebar_rename_requested(self, message: HistorySidebar.RenameRequested) -> None:
        self.rename_conversation(message.conversation_id, current=message.title)

    def rename_conversation(
        self, conversation_id: int | None, title: str = "", current: str = ""
    ) -> None:
        """Rename a stored conversation: to ``title`` at once, or ask (starting from
        ``current``) when no title is given."""
        if conversation_id is None or self.store is None:
            self.notify("Nothing to rename yet: a conversation is stored once you send a message.")
            return
        store = self.store

        def rename(new: str | None) -> None:
            if not new:
                return
            try:
                store.rename(conversation_id, new)
            except GemmaChatError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self.notify(f"Renamed to “{' '.join(new.split())}”.", markup=False)
            self._refresh_sidebar()

        if title:
            rename(title)
            return
        from gemma_chat.tui.screens.dialogs import RenameScreen

        if not current:
            try:
                current = store.get(conversation_id).title
            except GemmaChatError:
                current = ""
        self.push_screen(RenameScreen(current), rename)

    def on_history_sidebar_delete_requested(self, message: HistorySidebar.DeleteRequested) -> None:
        count = message.messages
        question = f"Delete “{message.title}”?"
        detail = (
            f"Its {count} message{'s' if count != 1 else ''} will be removed from the "
            "history for good."
        )

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.delete_conversation(message.conversation_id)

        self.push_screen(ConfirmScreen(question, detail, "Delete"), answered)

    async def delete_conversation(self, conversation_id: int) -> None:
        """Delete a stored conversation; deleting the open one starts a new one."""
        current = conversation_id == self.conversation_id
        if current and self.generating:
            self.notify(BUSY_HINT, severity="warning")
            return
        assert self.store is not None
        try:
            key = self.store.get(conversation_id).uuid
            self.store.delete(conversation_id)
        except GemmaChatError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.kv.forget(conversation_id, key)
        if current:
            self.session.forget()  # gone: nothing to leave or clean up
            await self.action_new()
        self._refresh_sidebar()

    def action_search(self, query: str = "") -> None:
        """Search every stored message (opens on the chosen result)."""
        if self.store is None:
            self.notify(self._history_note or "The history is not available.")
            return
        from gemma_chat.tui.screens.search import SearchScreen

        async def chosen(hit: SearchHit | None) -> None:
            if hit is not None:
                await self.resume_conversation(hit.conversation_id, message_id=hit.message_id)

        self.push_screen(SearchScreen(self.store.search, query), chosen)
