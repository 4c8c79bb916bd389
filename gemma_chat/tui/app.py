"""The gemma-chat TUI: the app owns the conversation and the engine; widgets render.

Blocking work (loading a model, generating, counting tokens) runs in thread workers that
never touch widgets: they post the past-tense messages of :mod:`gemma_chat.tui.messages`,
and the handlers here change state and update the screen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Static

from gemma_chat.chat.conversation import Conversation
from gemma_chat.config.settings import SavedPrompt, Settings
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone
from gemma_chat.history.store import HistoryStore
from gemma_chat.structured.constraint import OutputConstraint
from gemma_chat.tui.attachments import AttachmentTray
from gemma_chat.tui.branches import BranchSwitcher
from gemma_chat.tui.conversations import ConversationSwitcher
from gemma_chat.tui.follow import ChangeFollower
from gemma_chat.tui.history import HistoryKeeper
from gemma_chat.tui.keys import APP_BINDINGS, QUIT_HINT, KeyBindings
from gemma_chat.tui.kv_resume import KVResumeService
from gemma_chat.tui.loading import (
    LOAD_PROGRESS,
    LOADING_PLACEHOLDER,
    Loader,
    ModelLoading,
    default_gpu_supported,
)
from gemma_chat.tui.messages import (
    ModelLoaded,
    ModelLoadFailed,
    Notice,
    ReplyDelta,
    ReplyFailed,
    ReplyFinished,
    TokensCounted,
)
from gemma_chat.tui.meter import ContextMeter
from gemma_chat.tui.notices import Notices
from gemma_chat.tui.queue import SendQueue
from gemma_chat.tui.replies import ReplyStreamer
from gemma_chat.tui.screens.whole_text import WholeTextScreen
from gemma_chat.tui.signals import end_on_signals
from gemma_chat.tui.slash import SlashRouter
from gemma_chat.tui.theming import ThemeService
from gemma_chat.tui.widgets.attachment_chips import AttachmentChips
from gemma_chat.tui.widgets.chat_log import ChatLog
from gemma_chat.tui.widgets.footer import HelpFirstFooter
from gemma_chat.tui.widgets.preview import WholeTextRequested
from gemma_chat.tui.widgets.prompt_input import PromptInput
from gemma_chat.tui.widgets.sidebar import HistorySidebar
from gemma_chat.tui.widgets.status_bar import StatusBar
from gemma_chat.tui.widgets.welcome import WelcomePanel

if TYPE_CHECKING:
    from gemma_chat.backend.base import Backend
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo


class GemmaChatApp(App[None]):
    """Chat with a Gemma model.

    The app holds the state (settings, conversation, engine) and is composed of
    collaborators, one job each: ``loads`` (model loading), ``replies`` (streaming),
    ``slash`` (commands), ``history`` (the store and recording), ``switcher`` (new,
    resume, sidebar, search), ``kv`` (KV state on resume), ``meter``, ``themes`` and
    ``keys``. Textual's message handlers stay here and delegate.
    """

    CSS_PATH = "gemma.tcss"
    TITLE = "gemma-chat"
    BINDINGS = APP_BINDINGS

    def __init__(
        self,
        settings: Settings,
        *,
        loader: Loader | None = None,
        theme: str | None = None,
        gpu_supported: Callable[[], bool] | None = None,
        store: HistoryStore | None = None,
        resume: int | None = None,
        handle_signals: bool = False,
    ) -> None:
        """Set up the app; the model loads once the UI is up.

        Args:
            settings: The settings built by the CLI.
            loader: How to load a model (tests pass a scripted one).
            theme: A theme named on the command line (wins over everything else).
            gpu_supported: Whether the llama.cpp build can use a GPU.
            store: The history store (default: the data directory's, opened on mount).
            resume: A stored conversation to open at the start.
            handle_signals: End on SIGTERM and SIGHUP as on Ctrl+Q, with exit code 128 +
                the signal's number (for a real run; tests leave the signals alone).
        """
        super().__init__()
        self.settings = settings
        # Set by exit(): a load still waiting for a server that never answers gives up at
        # once, instead of keeping the process (which waits for its worker) for a timeout.
        self.loads = ModelLoading(self, loader)
        self.notices = Notices(self)
        self.meter = ContextMeter(self, lambda: self.status)
        self.themes = ThemeService(self)
        self.keys = KeyBindings(self)
        self.kv = KVResumeService(settings.state_cache)
        self._gpu_supported = gpu_supported or default_gpu_supported
        self._cli_theme = theme
        self.conversation = Conversation(system=settings.system)
        self.sampling = settings.sampling
        self.repeat_guard = settings.repeat_guard
        self.constraint: OutputConstraint | None = None
        """The schema or grammar replies follow (``/schema``, ``/prompt``); None: free text."""
        self.saved_prompt: SavedPrompt | None = None
        """The saved prompt in use (``/prompt NAME``): its template fills each message."""
        self.engine: Engine | None = None
        self.backend: Backend | None = None
        self.model_info: ModelInfo | RemoteModelInfo | None = None
        self.last_done: ReplyDone | None = None
        self.replies = ReplyStreamer(self)
        self.attachments = AttachmentTray(self)
        self.queue = SendQueue(self)
        self.slash = SlashRouter(self)
        # The switcher first: the history's callbacks (a store error, a resume) reach it.
        self.switcher = ConversationSwitcher(self)
        self.history = HistoryKeeper(self, store, resume)
        self.branches = BranchSwitcher(self)
        self.follow = ChangeFollower(self)
        self._handle_signals = handle_signals

    # ----------------------------------------------------------------- layout and start

    def compose(self):
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            yield HistorySidebar(id="sidebar")
            with Vertical(id="main"):
                yield WelcomePanel(id="welcome")
                yield ChatLog(id="chat")
                yield Static("", id="completions")
                yield AttachmentChips(id="chips")
                yield PromptInput(id="prompt", placeholder=LOADING_PLACEHOLDER)
        yield HelpFirstFooter()

    async def on_mount(self) -> None:
        if self._handle_signals:
            end_on_signals(self)
        self.themes.setup(self._cli_theme, self.settings.theme)
        self.keys.apply(self.settings.keys)
        self.prompt.focus()
        self._start_load(self.settings)
        await self.history.open()

    @property
    def prompt(self) -> PromptInput:
        """The input."""
        return self.query_one(PromptInput)

    @property
    def chat(self) -> ChatLog:
        """The conversation view."""
        return self.query_one(ChatLog)

    @property
    def status(self) -> StatusBar:
        """The status bar."""
        return self.query_one(StatusBar)

    def _gone(self) -> bool:
        # A worker's message can arrive while the app is shutting down and its widgets
        # are gone; there is nothing left to update then. (The main screen's widgets,
        # not the active screen's: a dialog may be open while the model loads.)
        return not self.is_running or not self.screen_stack or not self.query(StatusBar)

    @property
    def remote(self) -> bool:
        """Whether the model runs on a server (its token counts are estimates): the loaded
        backend says so; before any model is loaded, the settings do."""
        if self.backend is not None:
            return self.backend.is_remote
        return self.settings.backend == "openai"

    @property
    def generating(self) -> bool:
        """Whether a reply is being generated."""
        return self.replies.generating

    # ------------------------------------------------------------------- model loading

    def _start_load(self, settings: Settings) -> None:
        self.loads.start(settings)

    @property
    def _loading(self) -> Settings | None:
        """The settings of the load in progress (None when none is)."""
        return self.loads.loading

    def on_notice(self, message: Notice) -> None:
        self.notify(
            message.text, severity=message.severity, timeout=message.timeout, key=message.key
        )

    async def on_model_loaded(self, message: ModelLoaded) -> None:
        self.loads.loaded(message)
        if self._loading is None:
            self.notices.clear(LOAD_PROGRESS)  # "assembling the demo model…" is over
        await self.queue.flush()  # a message sent while it loaded

    async def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        await self.loads.failed(message)
        if self._loading is None:
            self.notices.clear(LOAD_PROGRESS)
            self.queue.load_failed()

    # ---------------------------------------------------------------------- sending

    async def on_prompt_input_submitted(self, event: PromptInput.Submitted) -> None:
        message = await self.slash.submitted(event.text)  # a /command runs there
        if message is not None and not await self.queue.hold(message):  # loading: queued
            await self.replies.send(message)

    def on_prompt_input_scroll_requested(self, event: PromptInput.ScrollRequested) -> None:
        self.chat.scroll_for_key(event.where)

    def on_prompt_input_quit_requested(self) -> None:
        self.exit()

    def on_reply_delta(self, message: ReplyDelta) -> None:
        self.replies.on_delta(message)
        self.follow.streamed(message.tokens)

    def on_reply_finished(self, message: ReplyFinished) -> None:
        self.meter.reply_ended()
        self.replies.on_finished(message)

    async def on_reply_failed(self, message: ReplyFailed) -> None:
        self.meter.reply_ended()
        await self.replies.on_failed(message)

    def on_whole_text_requested(self, message: WholeTextRequested) -> None:
        self.push_screen(WholeTextScreen(message.text, message.what))

    # ------------------------------------------------------------ the context meter

    def on_text_area_changed(self) -> None:
        self.schedule_count()

    def on_prompt_input_completions_changed(self, event: PromptInput.CompletionsChanged) -> None:
        self.follow.completions(event.matches)

    def schedule_count(self) -> None:
        """Every change of the conversation, the draft or the model comes here: the
        meter recounts, the footer and the welcome panel follow (:class:`ChangeFollower`)."""
        self.follow.changed()

    def on_tokens_counted(self, message: TokensCounted) -> None:
        self.follow.counted(message)

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:
        """Show a notification, sanitized, never parsed as markup, with a short timeout
        (see :meth:`Notices.notify`; ``key=`` replaces the last notice with that key)."""
        self.notices.notify(message, title=title, **kwargs)

    # ------------------------------------------------------------- conversations

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation on screen, once it has been stored."""
        return self.history.conversation_id

    async def resume_conversation(
        self, conversation_id: int, message_id: int | None = None
    ) -> bool:
        """Open a stored conversation (see :meth:`ConversationSwitcher.resume`)."""
        return await self.switcher.resume(conversation_id, message_id)

    async def action_new(self, keep_settings: bool = False) -> None:
        """Start a new conversation (``keep_settings``: as /clear does)."""
        await self.switcher.new(keep_settings)

    def action_history(self) -> None:
        """Show or hide the history sidebar."""
        self.switcher.toggle_sidebar()

    def action_search(self, query: str = "") -> None:
        """Search every stored message (opens on the chosen result)."""
        self.switcher.search(query)

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "earlier":
            event.stop()
            await self.switcher.show_earlier_pressed()

    async def on_history_sidebar_opened(self, message: HistorySidebar.Opened) -> None:
        await self.switcher.resume(message.conversation_id)

    async def on_history_sidebar_new_requested(self) -> None:
        await self.switcher.new()
        self.prompt.focus()

    def on_history_sidebar_closed(self) -> None:
        self.switcher.sidebar.remove_class("-open")
        self.prompt.focus()

    def on_history_sidebar_rename_requested(self, message: HistorySidebar.RenameRequested) -> None:
        self.switcher.rename(message.conversation_id, current=message.title)

    def on_history_sidebar_delete_requested(self, message: HistorySidebar.DeleteRequested) -> None:
        self.switcher.confirm_delete(message)

    # ------------------------------------------------------------------ actions

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Quit; a reply still being generated is stopped first, so its worker thread
        ends within a token instead of keeping the process alive until it is done."""
        self.loads.quit()
        self.replies.stop()
        self.history.at_exit()
        super().exit(*args, **kwargs)

    def action_stop(self) -> None:
        """Esc: cancel an edit (Ctrl+O) not sent yet, else stop the reply being
        generated (the partial reply is kept)."""
        if not (self.replies.cancel_edit() or self.queue.cancel()):
            self.replies.stop()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Esc is in the footer only while it stops something: a narrow footer keeps room.
        return self.follow.stop_shown() if action == "stop" else True

    def action_interrupt(self) -> None:
        """Ctrl+C: stop the reply; when there is none, say how to quit (it never quits:
        a habit from the shell must not end a chat)."""
        if self.generating:
            self.action_stop()
        else:
            self.notify(QUIT_HINT, timeout=3)

    async def action_retry(self) -> None:
        """Regenerate the selected reply, or the last (the old one stays a version)."""
        await self.replies.retry(self.branches.selected())

    async def action_edit(self) -> None:
        """Put the selected (or last) message of yours into the input to edit; sending
        it adds a version of it, Esc cancels."""
        await self.replies.edit(self.branches.selected())

    async def action_version(self, step: int) -> None:
        """Show the next (1) or previous (-1) version of the selected message."""
        await self.branches.switch(step)

    def action_select(self, step: int) -> None:
        """Select the message above (-1) or below (1)."""
        self.branches.select(step)

    def action_help(self) -> None:
        """Show every key and command (F1 again closes it)."""
        self.keys.toggle_help()

    def action_toggle_gpu(self) -> None:
        """Reload the model on the other device, keeping the conversation."""
        on_gpu = self.backend is not None and self.backend.info.device == "gpu"
        self.slash.switch_gpu(not on_gpu)

    def action_copy(self, what: str = "reply") -> None:
        """Copy the last reply, or its last code block, to the clipboard."""
        self.slash.copy(what)

    def action_settings(self) -> None:
        """Edit the system prompt and parameters in a form."""
        self.slash.edit_settings()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (Ctrl+P): see :meth:`SlashRouter.system_commands`."""
        yield from self.slash.system_commands(super().get_system_commands(screen))


def run_tui(settings: Settings, theme: str | None = None, resume: int | None = None) -> int:
    """Run the TUI until the user quits (``resume``: open that stored conversation).

    Returns:
        The exit code: 0 when the user quit, 128 + N after signal N (SIGTERM, SIGHUP),
        and 1 when the app crashed (Textual has printed why), never 0 then.
    """
    app = GemmaChatApp(settings, theme=theme, resume=resume, handle_signals=True)
    try:
        app.run()
    finally:
        app.kv.close()  # the KV state of the conversation left at quit
    return app.return_code or 0
