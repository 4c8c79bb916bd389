"""Streaming a reply in the app: the generate worker, the coalesced text it posts, and
the handlers that feed the reply widget and record the result.

The worker never touches widgets: it posts :class:`ReplyDelta`, then
:class:`ReplyFinished` or :class:`ReplyFailed`; the app hands them to
:class:`ReplyStreamer`, which updates the screen.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from gemma_chat.chat.conversation import Conversation, Turn
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone, TextDelta
from gemma_chat.tui.compaction import Compactor
from gemma_chat.tui.css_cache import install as remember_block_styles
from gemma_chat.tui.editing import Edits, PendingEdit, input_text
from gemma_chat.tui.gc_hold import GcHold
from gemma_chat.tui.kv_resume import KVResumeService
from gemma_chat.tui.long_reply import Plan, events_for, fits, long_plan
from gemma_chat.tui.messages import ReplyDelta, ReplyFailed, ReplyFinished
from gemma_chat.tui.reply_check import ReplyCheck
from gemma_chat.tui.slash import BUSY_HINT
from gemma_chat.tui.versioning import VersionActions
from gemma_chat.tui.widgets.chat_log import ChatLog, ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.message import Message
    from textual.timer import Timer
    from textual.worker import Worker

    from gemma_chat.config.settings import SavedPrompt, Settings
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar

FRAME_S = 1 / 60
"""The worker posts reply text at most once per frame."""


class ReplyRecorder(Protocol):
    """What the streamer records into the history (:class:`HistoryKeeper`)."""

    def reply_missing(self) -> bool: ...
    def record_user(self, meta: dict[str, Any] | None = None) -> None: ...
    def record_reply(self, done: ReplyDone, meta: dict[str, Any] | None = None) -> None: ...
    def record_retry(self) -> None: ...
    def record_retry_failed(self) -> None: ...
    def record_edit(self, turns_kept: int) -> None: ...
    def record_failed(self) -> None: ...
    @property
    def saving(self) -> bool: ...


class ReplyHost(Protocol):
    """What :class:`ReplyStreamer` uses of the app."""

    engine: Engine | None
    conversation: Conversation
    saved_prompt: SavedPrompt | None
    kv: KVResumeService
    history: ReplyRecorder
    attachments: Any  # AttachmentTray: the files for the next message
    last_done: ReplyDone | None
    switcher: Any  # ConversationSwitcher: the turns on screen
    stylesheet: Any  # Textual's: see css_cache

    @property
    def chat(self) -> ChatLog: ...
    @property
    def prompt(self) -> PromptInput: ...
    @property
    def status(self) -> StatusBar: ...
    @property
    def _loading(self) -> Settings | None: ...
    @property
    def is_running(self) -> bool: ...
    def _gone(self) -> bool: ...
    def notify(self, message: str, *, title: str = "", **kwargs: object) -> None: ...
    def post_message(self, message: Message) -> bool: ...
    def set_interval(self, interval: float, callback: Callable[[], object]) -> Timer: ...
    def set_timer(self, delay: float, callback: Callable[[], object]) -> Timer: ...
    def run_worker(
        self,
        work: Callable[[], None],
        name: str | None = "",
        group: str = "default",
        description: str = "",
        exit_on_error: bool = True,
        start: bool = True,
        exclusive: bool = False,
        thread: bool = False,
    ) -> Worker[None]: ...
    def schedule_count(self) -> None: ...


class ReplyStreamer(VersionActions):
    """Generates replies in a worker and shows them as they stream."""

    def __init__(self, app: ReplyHost) -> None:
        self._app = app
        remember_block_styles(app.stylesheet)  # a reply mounts hundreds of blocks
        self.cancel: threading.Event | None = None
        """Set to stop the reply being generated (None when none is)."""
        self._reply: ModelReply | None = None
        self._check = ReplyCheck(app)
        """Checks a constrained reply when it ends."""
        self._streamed = 0
        self._stream_started = 0.0
        self._speed_shown = 0.0
        self._delta_taken = threading.Event()
        self._gc = GcHold(app)
        self.compactor = Compactor(app, self)  # /compact, context_policy = "compact"
        self._plan: Plan | None = None  # the next message, when answered part by part
        self._plan_turn: Turn | None = None  # the question the plan answers
        self._edits = Edits()

    @property
    def generating(self) -> bool:
        """Whether a reply is being generated."""
        return self.cancel is not None

    @property
    def reply(self) -> ModelReply | None:
        """The reply widget being streamed into (None when none is)."""
        return self._reply

    def stop(self) -> None:
        """Stop the reply being generated (the partial reply is kept)."""
        if self.cancel is not None:
            self.cancel.set()

    @property
    def editing(self) -> PendingEdit | None:
        """The edit started with Ctrl+O and not sent yet, if it still applies."""
        return self._edits.pending(self._app.conversation)

    def cancel_edit(self) -> bool:
        """Esc while editing: the exchange stays as it was and the input gets back what
        it held before Ctrl+O. Returns whether there was an edit to cancel."""
        draft = self._edits.cancel(self._app.conversation)
        if draft is None:
            return False
        self._app.prompt.set_text(draft)
        self._app.notify("Edit cancelled.", timeout=3)
        return True

    async def send(self, text: str) -> None:
        """Send typed text, unless it must stay in the input (a reply or a load is
        under way, no model is loaded, or it cannot fit the context)."""
        app = self._app
        if not text.strip():
            return
        if self.generating:
            app.notify(BUSY_HINT, severity="warning")
            return
        edit = self.editing
        if edit is None and app.history.reply_missing():
            return
        if app.engine is None or app._loading is not None:
            # While another model loads, the working one is replaced (and closed) as
            # soon as the load ends: no reply may be generating on it then.
            app.notify(
                "A model is loading; your message stays in the input."
                if app.engine is not None
                else "No model is loaded yet; your message stays in the input.",
                severity="warning",
            )
            return
        typed = text  # what Ctrl+O and the input history give back
        if app.saved_prompt is not None:  # /prompt NAME: its template makes the message
            text = app.saved_prompt.fill(text)
        app.attachments.sync(typed)  # @path words attach their files
        text = app.attachments.message(text)  # the attached files first
        self._plan = long_plan(app, text, typed)  # too long: answered part by part
        if self._plan is None and not fits(app, text, app.engine.n_ctx):
            return
        if edit is not None:  # now, and only now, the edited exchange goes
            self._edits.commit(edit)
            self.compactor.forget(edit.turns_kept)
            app.history.record_edit(edit.turns_kept)
        app.prompt.remember(typed)
        app.prompt.clear()
        app.conversation.add_user(text, typed)
        self._plan_turn = app.conversation.turns[-1]
        meta = app.attachments.take_meta()
        if app.saved_prompt is not None:  # what was typed: an edit gives it back
            meta = {**(meta or {}), "typed": typed}
        app.history.record_user(self.compactor.take_meta(meta))
        await app.chat.add_user(text)
        await self.start()

    async def start(self, compact: bool = True) -> None:
        """Add a reply widget and start generating into it (``compact``: first compact a
        conversation that would not fit, with ``context_policy = "compact"``)."""
        app = self._app
        engine = app.engine
        assert engine is not None
        if compact and self.compactor.needed():
            self.compactor.run(then=lambda: self.start(compact=False))
            return
        self._reply = await app.chat.add_reply()
        self._check.expect(engine.constraint)
        self.cancel = cancel = threading.Event()
        self._status, self._streamed = app.status, 0  # the status bar: progress lines
        self._stream_started = time.perf_counter()
        app.status.set_speed("…")
        self._gc.streaming(True)
        app.kv.generation_started()
        conversation = app.conversation
        # The plan answers one question: a regenerate of another reply is a plain one.
        asked = conversation.turns[-1] if conversation.turns else None
        plan = self._plan if asked is not None and asked is self._plan_turn else None
        app.run_worker(
            lambda: self._generate(engine, conversation, cancel, plan),
            thread=True,
            name="generate",
            exclusive=True,
            exit_on_error=False,
            group="generate",
        )

    def _generate(
        self, engine: Engine, conversation: Conversation, cancel: threading.Event, plan: Any
    ) -> None:
        """Worker: stream one reply, posting the text and then the result.

        Deltas are coalesced: text is posted once the UI has taken the previous delta
        and a frame (1/60 s) has passed, and always before the result. A model at human
        speed gets every token posted at once; a fast one gets fewer, bigger deltas
        instead of a queue of thousands of messages that key presses would wait behind.
        """
        pending: list[str] = []
        last_post = 0.0
        taken = self._delta_taken
        taken.set()
        post_message, kv, status = self._app.post_message, self._app.kv, self._status

        def post() -> None:
            nonlocal last_post
            if pending:
                taken.clear()
                post_message(ReplyDelta("".join(pending), tokens=len(pending)))
                pending.clear()
            last_post = time.perf_counter()

        try:
            kv.wait()  # a saved KV state being written or restored
            notes: dict[str, Any] = {}  # a long message's notes, for the history
            for event in events_for(engine, conversation, cancel, plan, status, notes):
                if isinstance(event, TextDelta):
                    pending.append(event.text)
                    if taken.is_set() and time.perf_counter() - last_post >= FRAME_S:
                        post()
                else:
                    post()
                    post_message(ReplyFinished(event, notes or None))
        except GemmaChatError as exc:
            post()
            post_message(ReplyFailed(str(exc)))
        except Exception as exc:
            post()
            post_message(ReplyFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            kv.generation_ended()

    def on_delta(self, message: ReplyDelta) -> None:
        """Show streamed text and the speed so far."""
        self._delta_taken.set()
        if self._reply is None or not self._app.is_running:  # in flight as the app quits
            return
        self._reply.feed(message.text)
        self._streamed += message.tokens
        now = time.perf_counter()
        if now - self._speed_shown > 0.25 and now > self._stream_started:
            self._speed_shown = now
            rate = self._streamed / (now - self._stream_started)
            self._app.status.set_speed(f"{rate:.1f} tok/s…")

    def on_finished(self, message: ReplyFinished) -> None:
        """Keep and record the finished (or stopped) reply."""
        app = self._app
        done = message.done
        if app._gone():  # quit mid-reply: HistoryKeeper.at_exit kept what was shown
            self._gc.streaming(False)
            return
        done = self._check.checked(done)
        if self._reply is not None:
            self._reply.finish(done.stop_reason)  # it rendered exactly done.text as it streamed
        # Held until the reply has rendered what is still queued (a fast model is done
        # long before the screen is).
        self._gc.ended(self._reply.rendering if self._reply is not None else None)
        turn = app.conversation.add_model(done.text, done.stop_reason, done.token_ids)
        turn.model = self._reply.speaker if self._reply is not None else None
        app.history.record_reply(done, message.meta)
        self._edits.finished()
        app.last_done = done
        self._reply, self.cancel = None, None
        stats = done.stats
        ttft = f"TTFT {stats.ttft_s:.2f}s" if stats.ttft_s is not None else "TTFT –"
        speed = f"{stats.tokens_per_s:.1f} tok/s" if stats.tokens_per_s else "– tok/s"
        rate = stats.acceptance
        drafts = f" · drafts {rate:.0%} kept" if rate is not None else ""
        app.status.set_speed(f"{ttft} · {speed}{drafts}")
        if stats.dropped_turns:  # notified, and a marker in the conversation
            self.compactor.dropped(stats.dropped_turns)
        if done.error:  # the server failed mid-reply: the partial reply stays
            app.notify(
                f"The reply was cut off: {done.error}", severity="error", timeout=15, markup=False
            )
        app.schedule_count()

    async def on_failed(self, message: ReplyFailed) -> None:
        """Drop the failed reply; its question goes back into the input."""
        app = self._app
        self._gc.streaming(False)
        if self._reply is not None:
            await self._reply.remove()
        self._reply, self.cancel = None, None
        replaced, retrying = self._edits.failed()
        if retrying and replaced is not None:  # the old reply is back, and stays
            replaced.restore(app.conversation)
            app.history.record_retry_failed()
            app.status.set_speed("")
            await app.chat.add_notice(f"The reply failed: {message.reason}", error=True)
            return
        pending = app.conversation.pending_user
        if pending is not None:  # nothing typed is lost: it goes back into the input
            app.conversation.turns.pop()
            app.history.record_failed()
            user = app.chat.last(UserMessage)
            if user is not None:
                await user.remove()
            if not app.prompt.text.strip():
                app.prompt.set_text(input_text(pending, app.saved_prompt is not None))
            if replaced is not None:  # an edited message: the exchange it replaced is back
                replaced.restore(app.conversation)
        app.status.set_speed("")
        await app.chat.add_notice(f"The reply failed: {message.reason}", error=True)
