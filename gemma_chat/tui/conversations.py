"""Switching conversations (:class:`ConversationSwitcher`): new, resume, the history
sidebar, rename, delete and full-text search. Recording is :mod:`gemma_chat.tui.history`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from textual.widgets import Button

from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.errors import GemmaChatError
from gemma_chat.history.recording import restore_params
from gemma_chat.history.store import to_conversation
from gemma_chat.tui.guarded_store import failure_text
from gemma_chat.tui.leaving import refused, why_not_leave, why_not_switch
from gemma_chat.tui.renaming import rename_conversation
from gemma_chat.tui.screens.dialogs import ConfirmScreen
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.sidebar import HistorySidebar
from gemma_chat.tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from textual.css.query import DOMQuery
    from textual.screen import Screen
    from textual.timer import Timer
    from textual.widget import Widget

    from gemma_chat.config.settings import Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.generation.events import ReplyDone
    from gemma_chat.history.store import SearchHit
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo
    from gemma_chat.tui.history import HistoryKeeper, VersionLabels
    from gemma_chat.tui.kv_resume import KVResumeService
    from gemma_chat.tui.slash import SlashRouter
    from gemma_chat.tui.widgets.chat_log import ChatLog
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar

_W = TypeVar("_W", bound="Widget")

SIDEBAR_LIMIT = 500
"""The most conversations the sidebar lists (search finds the older ones)."""
FOUND_S = 6.0
"""How long a message found by search stays highlighted."""
SHOWN_TURNS = 40
"""Turns of a resumed conversation shown at first; a button shows more."""


class SwitcherHost(Protocol):
    """What :class:`ConversationSwitcher` uses of the app."""

    settings: Settings
    conversation: Conversation
    history: HistoryKeeper
    kv: KVResumeService
    slash: SlashRouter
    engine: Engine | None
    model_info: ModelInfo | RemoteModelInfo | None
    last_done: ReplyDone | None
    branches: VersionLabels
    replies: Any  # ReplyStreamer: an edit pending
    queue: Any  # SendQueue: a message waiting for the model

    @property
    def generating(self) -> bool: ...
    @property
    def chat(self) -> ChatLog: ...
    @property
    def prompt(self) -> PromptInput: ...
    @property
    def status(self) -> StatusBar: ...
    def schedule_count(self) -> None: ...
    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None: ...
    def push_screen(self, screen: Screen[Any], callback: Any = None) -> Any: ...
    def query(self, selector: Any = None) -> DOMQuery[Any]: ...
    def query_one(self, selector: type[_W]) -> _W: ...
    def call_after_refresh(self, callback: Any, *args: Any, **kwargs: Any) -> bool: ...
    def set_timer(self, delay: float, callback: Any = None) -> Timer: ...


class ConversationSwitcher:
    """New, resume, sidebar and search; what is recorded lives in :class:`HistoryKeeper`."""

    def __init__(self, app: SwitcherHost) -> None:
        self._app = app
        self._found_timer: Timer | None = None
        self._hidden_turns = 0
        """How many turns of the conversation on screen are not mounted (above)."""

    # ------------------------------------------------------------------- resuming

    async def new(self, keep_settings: bool = False) -> None:
        """Start a new conversation (``keep_settings``: keep the system prompt and
        parameters, as /clear does)."""
        app = self._app
        if not self._may_leave():
            return
        app.history.leaving()
        system = app.conversation.system if keep_settings else app.settings.system
        app.conversation = Conversation(system=system)
        if not keep_settings:
            app.slash.set_params(app.settings.sampling, app.settings.repeat_guard)
        app.history.begin(None, [])
        await self._show()
        self.refresh_sidebar()

    async def resume(self, conversation_id: int, message_id: int | None = None) -> bool:
        """Open a stored conversation: its messages, system prompt and parameters.

        Args:
            conversation_id: The stored conversation.
            message_id: A stored message to scroll to and highlight (a search result).

        Returns:
            Whether it is on screen now.
        """
        app = self._app
        if app.history.store is None:
            app.notify(app.history.unavailable)
            return False
        if conversation_id != app.history.conversation_id:
            if not self._may_leave():
                return False
            # Token ids only for the model file that generated them; before a model is
            # loaded there is none, and the load gives them back (HistoryKeeper.model_loaded).
            sha256 = getattr(app.model_info, "sha256", None) if app.engine else None
            try:
                record = app.history.store.get(conversation_id)
                messages = app.history.store.messages(conversation_id)
                if message_id is not None and all(m.id != message_id for m in messages):
                    # A search hit on another branch: that branch is opened.
                    messages = app.history.store.view(conversation_id, message_id)
                conversation = to_conversation(record, messages, sha256)
                params = restore_params(record, app.settings.sampling, app.settings.repeat_guard)
            except Exception as exc:  # a store error or a damaged conversation
                app.notify(
                    f"Could not open conversation {conversation_id}: {failure_text(exc)}",
                    severity="error",
                    markup=False,
                )
                return False
            app.history.leaving()
            app.conversation = conversation
            app.slash.set_params(*params)
            app.history.begin(conversation_id, messages)
            await self._show()
            app.history.restore_state()  # its saved KV state, in the background
        elif (
            message_id is not None
            and app.history.session.turn_of(message_id) is None
            and not await self.show_branch(message_id)  # on another branch of this one
        ):
            return False
        if message_id is not None:
            await self._jump_to(message_id)
        self.refresh_sidebar()
        return True

    async def show_branch(self, message_id: int) -> bool:
        """Show the newest branch through ``message_id`` of the conversation on screen
        in its place (switching versions, a search hit), and view it in the store. The
        model's KV cache keeps the prefix the branches share (see ``Llama.generate``).

        Returns:
            Whether it is on screen now (a store error is notified).
        """
        app = self._app
        store, cid = app.history.store, app.history.conversation_id
        if store is None or cid is None:
            return False
        if refused(app, why_not_switch(app)):
            return False
        sha256 = getattr(app.model_info, "sha256", None) if app.engine else None
        try:
            messages = store.view(cid, message_id)
            conversation = to_conversation(store.get(cid), messages, sha256)
        except Exception as exc:
            app.notify(f"Could not open that branch: {failure_text(exc)}", severity="error")
            return False
        app.conversation = conversation
        app.history.begin(cid, messages)
        await self._show()
        return True

    def _may_leave(self) -> bool:
        """Whether the conversation on screen may be left (said when not); an open edit
        is cancelled, giving the input back the draft it held."""
        if refused(self._app, why_not_leave(self._app)):
            return False
        self._app.replies.cancel_edit()
        return True

    def turn_widgets(self) -> list[UserMessage | ModelReply]:
        """The widgets of the turns on screen, in order (``hidden_turns`` come before)."""
        return [w for w in self._turn_widgets() if w.display]

    @property
    def hidden_turns(self) -> int:
        """How many turns come before the first one on screen (see :meth:`_show`)."""
        return self._hidden_turns

    async def reveal(self, index: int) -> UserMessage | ModelReply | None:
        """The widget of turn ``index``, showing earlier turns first if it is one."""
        if index < self._hidden_turns:
            await self._show_earlier(self._hidden_turns - index)
        shown = self.turn_widgets()
        at = index - self._hidden_turns
        return shown[at] if 0 <= at < len(shown) else None

    async def _show(self) -> None:
        """Put the conversation on screen: its last ``SHOWN_TURNS`` turns, replies
        rendered whole as Markdown, and a button for the earlier ones."""
        app = self._app
        chat = app.chat
        app.replies.compactor.forget()  # its note belongs to the conversation left
        await chat.remove_children()
        app.last_done = None
        app.status.set_speed("")
        self._hidden_turns = len(app.conversation.turns)
        await self._show_earlier(SHOWN_TURNS)
        if app.conversation.pending_user is not None:
            await chat.add_notice(
                "This message has no reply (gemma-chat stopped while replying): Ctrl+R "
                "generates one, Ctrl+O puts it back into the input."
            )
        chat.anchor()
        app.schedule_count()
        app.branches.refresh()

    async def _show_earlier(self, count: int) -> None:
        """Mount up to ``count`` more of the turns not shown yet, above the others.

        Mounting hundreds of Markdown replies at once would freeze the screen for
        seconds, so a long conversation opens on its end."""
        app = self._app
        chat = app.chat
        end = self._hidden_turns
        start = max(0, end - count)
        widgets: list[Widget] = [
            UserMessage(turn.text)
            if turn.role is Role.USER
            else ModelReply(turn.text, turn.stop_reason, speaker=turn.model or "Gemma")
            for turn in app.conversation.turns[start:end]
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

    async def show_earlier_pressed(self) -> None:
        """The "show earlier messages" button was pressed."""
        app = self._app
        shown_first = self._turn_widgets()[0]
        await self._show_earlier(SHOWN_TURNS)
        app.call_after_refresh(app.chat.scroll_to_widget, shown_first, animate=False, top=True)

    def _turn_widgets(self) -> list[UserMessage | ModelReply]:
        return [w for w in self._app.chat.children if isinstance(w, UserMessage | ModelReply)]

    async def _jump_to(self, message_id: int) -> None:
        """Scroll to the turn holding a stored message and highlight it."""
        app = self._app
        turns = len(app.conversation.turns)
        if not turns:
            return
        index = app.history.session.turn_of(message_id)
        index = turns - 1 if index is None else index
        index = min(index, turns - 1)
        if index < self._hidden_turns:  # with a few turns before it, for context
            await self._show_earlier(self._hidden_turns - max(0, index - 4))
        widget = self._turn_widgets()[index - self._hidden_turns]
        for old in app.chat.query(".-found"):
            old.remove_class("-found")
        widget.add_class("-found")
        app.call_after_refresh(app.chat.scroll_to_center, widget, animate=False)
        if self._found_timer is not None:
            self._found_timer.stop()
        self._found_timer = app.set_timer(FOUND_S, lambda: widget.remove_class("-found"))

    # --------------------------------------------------------- sidebar and search

    @property
    def sidebar(self) -> HistorySidebar:
        """The history sidebar."""
        return self._app.query_one(HistorySidebar)

    def toggle_sidebar(self) -> None:
        """Show or hide the history sidebar."""
        sidebar = self.sidebar
        if sidebar.has_class("-open"):
            sidebar.remove_class("-open")
            self._app.prompt.focus()
        else:
            sidebar.add_class("-open")
            self.refresh_sidebar()
            sidebar.listing.focus()

    def refresh_sidebar(self) -> None:
        app = self._app
        found = app.query(HistorySidebar)
        if not found or not found.first().has_class("-open"):
            return
        sidebar = found.first()
        if app.history.store is None:
            sidebar.show([], None, app.history.unavailable)
            return
        try:
            records = app.history.store.conversations(limit=SIDEBAR_LIMIT)
        except GemmaChatError as exc:
            sidebar.show([], None, str(exc))
            return
        sidebar.show(records, app.history.conversation_id, "No conversations yet.")

    def rename(self, conversation_id: int | None, title: str = "", current: str = "") -> None:
        """Rename a stored conversation (see :func:`rename_conversation`)."""
        rename_conversation(self._app, conversation_id, title, current, self.refresh_sidebar)

    def confirm_delete(self, message: HistorySidebar.DeleteRequested) -> None:
        """Ask before deleting a conversation from the sidebar."""
        count = message.messages
        question = f"Delete “{message.title}”?"
        detail = (
            f"Its {count} message{'s' if count != 1 else ''} will be removed from the "
            "history for good."
        )

        async def answered(yes: bool | None) -> None:
            if yes:
                await self.delete(message.conversation_id)

        self._app.push_screen(ConfirmScreen(question, detail, "Delete"), answered)

    async def delete(self, conversation_id: int) -> None:
        """Delete a stored conversation; deleting the open one starts a new one."""
        app = self._app
        current = conversation_id == app.history.conversation_id
        if current and not self._may_leave():
            return
        assert app.history.store is not None
        try:
            key = app.history.store.get(conversation_id).uuid
            app.history.store.delete(conversation_id)
        except GemmaChatError as exc:
            app.notify(str(exc), severity="error", markup=False)
            return
        app.kv.forget(conversation_id, key)
        if current:
            app.history.session.forget()  # gone: nothing to leave or clean up
            await self.new()
        self.refresh_sidebar()

    def search(self, query: str = "") -> None:
        """Search every stored message (opens on the chosen result)."""
        app = self._app
        if app.history.store is None:
            app.notify(app.history.unavailable)
            return
        from gemma_chat.tui.screens.search import SearchScreen

        async def chosen(hit: SearchHit | None) -> None:
            if hit is not None:
                await self.resume(hit.conversation_id, message_id=hit.message_id)

        app.push_screen(SearchScreen(app.history.store.search, query), chosen)
