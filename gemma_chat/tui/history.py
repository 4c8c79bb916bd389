"""Conversation history in the app (an App mixin): the store is opened, and the chat is
recorded as it happens. Switching conversations is :mod:`gemma_chat.tui.conversations`.

Store writes take milliseconds, so they run on the UI thread. A store error never stops
the chat or touches what is on screen: it is shown once, and the conversation is no
longer saved. An unreadable history file gets a dialog that names it; it is only ever
renamed, never deleted or overwritten.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_chat.backend.kv_cache import KVStateCache
from gemma_chat.chat.conversation import Conversation, Role, StopReason
from gemma_chat.errors import GemmaChatError
from gemma_chat.history.recording import params_of
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import (
    CorruptStore,
    HistoryStore,
    MessageRecord,
    StoreError,
    move_aside,
    store_file,
    to_conversation,
)
from gemma_chat.sanitize import one_line
from gemma_chat.tui.kv_resume import KVResumeService, KVTarget, StateEvent, kv_target
from gemma_chat.tui.replies import ReplyStreamer
from gemma_chat.tui.screens.dialogs import MOVE_ASIDE, CorruptStoreScreen

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

    from gemma_chat.backend.base import Backend
    from gemma_chat.config.settings import RepeatGuard, Sampling, Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.generation.events import ReplyDone
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo
    from gemma_chat.tui.widgets.chat_log import ChatLog
    from gemma_chat.tui.widgets.prompt_input import PromptInput
    from gemma_chat.tui.widgets.status_bar import StatusBar

    AppBase = App[None]
    """Type checkers see the App's own methods (notify, push_screen, timers) on the
    mixins; at run time the mixin is a plain class ahead of App in the MRO."""
else:
    AppBase = object


class GuardedStore:
    """The app's handle on the history store: whatever goes wrong inside a store call
    (a damaged row, a bug, an error SQLite or Python raises that the store does not
    translate) reaches the app as a :class:`StoreError`, which every caller handles with
    one notification. Nothing from the store can crash the app, so no chat is lost to a
    traceback.

    Attributes are the store's; its methods are wrapped.
    """

    def __init__(self, store: HistoryStore) -> None:
        self.wrapped = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.wrapped, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except GemmaChatError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"the history store failed: {type(exc).__name__}: {one_line(str(exc))}"
                ) from exc

        return call


def _guarded(store: HistoryStore | GuardedStore | None) -> GuardedStore | None:
    if store is None or isinstance(store, GuardedStore):
        return store
    return GuardedStore(store)


class HistorySupport(AppBase):
    """The store, and recording the conversation on screen into it."""

    settings: Settings
    conversation: Conversation
    sampling: Sampling
    repeat_guard: RepeatGuard
    engine: Engine | None
    backend: Backend | None
    model_info: ModelInfo | RemoteModelInfo | None
    last_done: ReplyDone | None
    # From ConversationSwitching:
    _refresh_sidebar: Callable[[], None]
    kv: KVResumeService
    replies: ReplyStreamer

    if TYPE_CHECKING:  # the app's and ConversationSwitching's, read-only there

        @property
        def generating(self) -> bool: ...
        @property
        def chat(self) -> ChatLog: ...
        @property
        def prompt(self) -> PromptInput: ...
        @property
        def status(self) -> StatusBar: ...
        async def resume_conversation(
            self, conversation_id: int, message_id: int | None = None
        ) -> bool: ...

    def setup_history(self, store: HistoryStore | None, resume: int | None) -> None:
        """Remember the store (None: open the default one on mount) and what to resume."""
        self.store = _guarded(store)
        # Not recording until the store is open (on mount).
        self.session = ConversationSession(
            None, enabled=self.settings.save_history, on_error=self._store_failed
        )
        self._resume_at_start = resume
        self._history_note = ""
        self._found_timer: Timer | None = None
        self._hidden_turns = 0

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation on screen, once it has been stored."""
        return self.session.conversation_id

    # ------------------------------------------------------------- opening the store

    async def open_history(self) -> None:
        """Open the store (on mount) and resume the conversation asked for, if any."""
        if self.store is None:
            path = store_file()
            if not self.settings.save_history and not path.exists():
                self._history_note = "History saving is off (save_history = false)."
                if self._resume_at_start is not None:
                    self.notify(
                        f"There is no history yet to resume {self._resume_at_start} from.",
                        severity="error",
                    )
                return
            try:
                self.store = GuardedStore(HistoryStore(path))
            except CorruptStore as exc:
                bad = exc.path

                async def answered(answer: str | None) -> None:
                    await self._corrupt_answered(bad, answer or "")

                self.push_screen(CorruptStoreScreen(str(bad), str(exc)), answered)
                return
            except Exception as exc:  # whatever it is, the chat goes on without saving
                self._history_unavailable(failure_text(exc))
                return
        await self._store_ready()

    async def _store_ready(self) -> None:
        assert self.store is not None
        self.session.attach(self.store, self.conversation_id)
        self._refresh_sidebar()
        if self._resume_at_start is not None:
            await self.resume_conversation(self._resume_at_start)

    async def _corrupt_answered(self, path: Path, answer: str) -> None:
        if answer != MOVE_ASIDE:
            self._history_unavailable(f"{path} is unreadable and was left as it is")
            return
        try:
            moved = move_aside(path)
            self.store = GuardedStore(HistoryStore(path))
        except Exception as exc:
            self._history_unavailable(failure_text(exc))
            return
        self.notify(
            f"The unreadable history was moved to {moved}; a new history has started.",
            markup=False,
            timeout=10,
        )
        await self._store_ready()

    def _history_unavailable(self, reason: str) -> None:
        self.store = None
        self._history_note = f"History is not saved this session: {reason}."
        self.notify(self._history_note, severity="warning", markup=False, timeout=15)
        self._refresh_sidebar()

    # ------------------------------------------------------------------ recording

    def _store_failed(self, exc: Exception) -> None:
        """The first store failure: shown once; this conversation is no longer saved
        (what is on screen stays)."""
        self.notify(
            f"Could not save to the history ({failure_text(exc)}); this conversation "
            "is no longer being saved, but stays on screen.",
            severity="error",
            markup=False,
            timeout=15,
        )

    def _record_user(self) -> None:
        """Store the message just sent."""
        params = params_of(self.sampling, self.repeat_guard)
        if self.session.record_user(self.conversation, params) is not None:
            self._refresh_sidebar()

    def _record_reply(self, done: ReplyDone) -> None:
        """Store a finished or stopped reply, replacing the one a retry regenerated."""
        model = getattr(getattr(self.backend, "info", None), "model", None)
        sha256 = getattr(self.model_info, "sha256", None)
        stored = self.session.record_reply(
            done, self.conversation, model=model, model_sha256=sha256
        )
        if stored is not None:
            self._refresh_sidebar()

    def _record_retry(self) -> None:
        """The last reply left the screen to be regenerated: it stays stored until the
        new one replaces it (a failed or interrupted retry keeps it)."""
        self.session.begin_retry(len(self.conversation.turns))

    def _record_edit(self) -> None:
        """The last message (and its reply) went back into the input: delete them."""
        self.session.edit(len(self.conversation.turns))

    def _record_failed(self) -> None:
        """The reply failed and its question went back into the input (see
        :meth:`ConversationSession.unsend`)."""
        self.session.unsend(len(self.conversation.turns))

    def _record_settings(self) -> None:
        """Store a changed system prompt or parameters."""
        params = params_of(self.sampling, self.repeat_guard)
        self.session.record_settings(self.conversation.system, params)

    def _leaving_conversation(self) -> None:
        """Called just before the conversation on screen is left: the user opens another
        one, starts a new one, or quits. The model's KV state for it is saved (in the
        background), so that reopening it later does not evaluate its whole history
        again (see :mod:`gemma_chat.tui.kv_resume`)."""
        self.kv.save(self._kv_target(), generating=self.generating)

    def _kv_target(self) -> KVTarget | None:
        sha256 = getattr(self.model_info, "sha256", None)
        return kv_target(self.engine, self.store, self.conversation_id, sha256, self.conversation)

    def restore_conversation_state(self) -> None:
        """Queue restoring the saved KV state of the conversation on screen."""
        self.kv.restore(self._kv_target())

    @property
    def state_events(self) -> list[StateEvent]:
        """What the finished KV-state saves and restores did (for the tests)."""
        return self.kv.events

    @property
    def state_cache(self) -> KVStateCache:
        """The KV state cache."""
        return self.kv.cache

    def wait_for_state(self, timeout: float | None = None) -> None:
        """Block until the queued KV-state work is done (never on the UI thread)."""
        self.kv.wait(timeout)

    def close_state_cache(self) -> None:
        """Finish the queued KV-state work (after the app has quit)."""
        self.kv.close()

    def _begin(self, conversation_id: int | None, messages: list[MessageRecord]) -> None:
        """Point the recording at the conversation now on screen (the one left is
        deleted if this session created it and left it empty)."""
        self.session.close()
        self.session.attach(self.store, conversation_id, messages)

    def history_at_exit(self) -> None:
        """The app is quitting: keep a reply cut short by quitting, leave the
        conversation."""
        reply = self.replies.reply
        if self.generating and reply is not None and reply.text and self.conversation_id:
            # The worker's result would arrive after the app has gone: store the text
            # shown so far now, as a reply the user stopped.
            sampling = self.sampling.model_dump()
            sampling["seed"] = getattr(self.engine, "last_seed", None)
            sampling["repeat_guard"] = self.repeat_guard.model_dump()
            record = MessageRecord(
                role=Role.MODEL.value,
                text=reply.text,
                stop_reason=StopReason.CANCELLED.value,
                partial=True,
                model=getattr(getattr(self.backend, "info", None), "model", None),
                model_sha256=getattr(self.model_info, "sha256", None),
                sampling=sampling,
                reply_to=self.session.question_id(len(self.conversation.turns)),
                system=self.conversation.system,
            )
            # As when a reply is stopped with Esc: a retried reply replaces the old one.
            self.session.record_stopped(record)
        self._leaving_conversation()
        self.session.close()

    def _reply_missing(self) -> bool:
        """True (and a hint) when a resumed conversation ends with an unanswered message."""
        if self.conversation.pending_user is None:
            return False
        self.notify(
            "The last message has no reply yet: Ctrl+R generates one, Ctrl+O edits it.",
            severity="warning",
        )
        return True

    def _history_model_loaded(self) -> None:
        """A model (re)loaded and the app dropped the reply token ids: give back the
        stored ones that this very model file generated (same sha256)."""
        sha256 = getattr(self.model_info, "sha256", None)
        cid = self.conversation_id
        if not sha256 or cid is None or self.store is None:
            return
        try:
            stored = to_conversation(self.store.get(cid), self.store.messages(cid), sha256)
        except Exception:  # a damaged row: the ids are an optimisation, never needed
            return
        for turn, saved in zip(self.conversation.turns, stored.turns, strict=False):
            if turn.role is not saved.role or turn.text != saved.text:
                break
            turn.token_ids = saved.token_ids


def failure_text(exc: Exception) -> str:
    """One line about a failure: the store's own message, or the exception's type and
    text for anything else."""
    if isinstance(exc, GemmaChatError):
        return str(exc)
    return f"{type(exc).__name__}: {one_line(str(exc))}"
