"""Conversation history in the app: the store is opened, and the chat is recorded as it
happens (:class:`HistoryKeeper`). Switching conversations is
:mod:`gemma_chat.tui.conversations`.

Store writes take milliseconds, so they run on the UI thread. A store error never stops
the chat or touches what is on screen: it is shown once, and the conversation is no
longer saved. An unreadable history file gets a dialog that names it; it is only ever
renamed, never deleted or overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gemma_chat.chat.conversation import Conversation, Role, StopReason
from gemma_chat.history.recording import params_of
from gemma_chat.history.session import ConversationSession
from gemma_chat.history.store import (
    CorruptStore,
    HistoryStore,
    MessageRecord,
    move_aside,
    store_file,
    to_conversation,
)
from gemma_chat.tui.guarded_store import GuardedStore, failure_text, guarded
from gemma_chat.tui.kv_resume import KVResumeService, KVTarget, kv_target
from gemma_chat.tui.screens.dialogs import MOVE_ASIDE, CorruptStoreScreen

if TYPE_CHECKING:
    from textual.screen import Screen

    from gemma_chat.backend.base import Backend
    from gemma_chat.config.settings import RepeatGuard, Sampling, Settings
    from gemma_chat.generation.engine import Engine
    from gemma_chat.generation.events import ReplyDone
    from gemma_chat.models.loader import RemoteModelInfo
    from gemma_chat.models.resolve import ModelInfo
    from gemma_chat.tui.widgets.chat_log import ModelReply


class Sidebar(Protocol):
    """What the history updates when it changes (:class:`ConversationSwitcher`)."""

    def refresh_sidebar(self) -> None: ...
    async def resume(self, conversation_id: int, message_id: int | None = None) -> bool: ...


class VersionLabels(Protocol):
    """The labels of each message's versions (:class:`BranchSwitcher`)."""

    def refresh(self) -> None: ...


class Streaming(Protocol):
    """The reply being streamed (:class:`ReplyStreamer`)."""

    @property
    def reply(self) -> ModelReply | None: ...


class HistoryHost(Protocol):
    """What :class:`HistoryKeeper` uses of the app."""

    settings: Settings
    conversation: Conversation
    sampling: Sampling
    repeat_guard: RepeatGuard
    engine: Engine | None
    backend: Backend | None
    model_info: ModelInfo | RemoteModelInfo | None
    kv: KVResumeService
    branches: VersionLabels

    @property
    def replies(self) -> Streaming: ...
    @property
    def switcher(self) -> Sidebar: ...

    @property
    def generating(self) -> bool: ...
    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None: ...
    def push_screen(self, screen: Screen[Any], callback: Any = None) -> Any: ...


class HistoryKeeper:
    """The store, and recording the conversation on screen into it."""

    def __init__(self, app: HistoryHost, store: HistoryStore | None, resume: int | None) -> None:
        """Remember the store (None: open the default one on :meth:`open`) and what to
        resume."""
        self._app = app
        self.store = guarded(store)
        # Not recording until the store is open (on mount).
        self.session = ConversationSession(
            None, enabled=app.settings.save_history, on_error=self._store_failed, origin="app"
        )
        self._resume_at_start = resume
        self.note = ""
        """Why there is no history this session ("" when there is one)."""

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation on screen, once it has been stored."""
        return self.session.conversation_id

    @property
    def saving(self) -> bool:
        """Whether the conversation on screen is being saved (a new version keeps the
        old branch only then)."""
        return self.session.saving

    @property
    def unavailable(self) -> str:
        """Why the history cannot be used, for a notification."""
        return self.note or "The history is not available."

    # ------------------------------------------------------------- opening the store

    async def open(self) -> None:
        """Open the store (on mount) and resume the conversation asked for, if any."""
        app = self._app
        if self.store is None:
            path = store_file()
            if not app.settings.save_history and not path.exists():
                self.note = "History saving is off (save_history = false)."
                if self._resume_at_start is not None:
                    app.notify(
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

                app.push_screen(CorruptStoreScreen(str(bad), str(exc)), answered)
                return
            except Exception as exc:  # whatever it is, the chat goes on without saving
                self._unavailable(failure_text(exc))
                return
        await self._store_ready()

    async def _store_ready(self) -> None:
        assert self.store is not None
        self.session.attach(self.store, self.conversation_id)
        self._app.switcher.refresh_sidebar()
        if self._resume_at_start is not None:
            await self._app.switcher.resume(self._resume_at_start)

    async def _corrupt_answered(self, path: Path, answer: str) -> None:
        if answer != MOVE_ASIDE:
            self._unavailable(f"{path} is unreadable and was left as it is")
            return
        try:
            moved = move_aside(path)
            self.store = GuardedStore(HistoryStore(path))
        except Exception as exc:
            self._unavailable(failure_text(exc))
            return
        self._app.notify(
            f"The unreadable history was moved to {moved}; a new history has started.",
            markup=False,
            timeout=10,
        )
        await self._store_ready()

    def _unavailable(self, reason: str) -> None:
        self.store = None
        self.note = f"History is not saved this session: {reason}."
        self._app.notify(self.note, severity="warning", markup=False, timeout=15)
        self._app.switcher.refresh_sidebar()

    # ------------------------------------------------------------------ recording

    def _store_failed(self, exc: Exception) -> None:
        """The first store failure: shown once; this conversation is no longer saved
        (what is on screen stays)."""
        self._app.notify(
            f"Could not save to the history ({failure_text(exc)}); this conversation "
            "is no longer being saved, but stays on screen.",
            severity="error",
            markup=False,
            timeout=15,
        )

    def record_user(self, meta: dict[str, Any] | None = None) -> None:
        """Store the message just sent (``meta``: its attached files)."""
        app = self._app
        params = params_of(app.sampling, app.repeat_guard)
        if self.session.record_user(app.conversation, params, None, meta) is not None:
            app.switcher.refresh_sidebar()
            app.branches.refresh()

    def record_reply(self, done: ReplyDone, meta: dict[str, Any] | None = None) -> None:
        """Store a finished or stopped reply, replacing the one a retry regenerated
        (``meta``: a long input's notes)."""
        app = self._app
        stored = self.session.record_reply(
            done,
            app.conversation,
            model=self._model_name(),
            model_sha256=self._sha256(),
            meta=meta,
        )
        if stored is not None:
            app.switcher.refresh_sidebar()
            app.branches.refresh()

    def record_retry(self) -> None:
        """The last reply left the screen to be regenerated: it stays stored until the
        new one replaces it (a failed or interrupted retry keeps it)."""
        self.session.begin_retry(len(self._app.conversation.turns))

    def record_retry_failed(self) -> None:
        """The regenerated reply failed: the old one is the last turn again."""
        self.session.cancel_retry()

    def record_edit(self, turns_kept: int) -> None:
        """An edited message is being sent in place of the turns after the first
        ``turns_kept``: they are kept, marked replaced by it once it is stored."""
        self.session.begin_edit(turns_kept)

    def record_failed(self) -> None:
        """The reply failed and its question went back into the input (see
        :meth:`ConversationSession.unsend`)."""
        self.session.unsend(len(self._app.conversation.turns))

    def record_settings(self) -> None:
        """Store a changed system prompt or parameters."""
        app = self._app
        self.session.record_settings(
            app.conversation.system, params_of(app.sampling, app.repeat_guard)
        )

    def begin(self, conversation_id: int | None, messages: list[MessageRecord]) -> None:
        """Point the recording at the conversation now on screen (the one left is
        deleted if this session created it and left it empty)."""
        self.session.close()
        self.session.attach(self.store, conversation_id, messages)

    # ----------------------------------------------------------- the KV state

    def leaving(self) -> None:
        """Called just before the conversation on screen is left: the user opens another
        one, starts a new one, or quits. The model's KV state for it is saved (in the
        background), so that reopening it later does not evaluate its whole history
        again (see :mod:`gemma_chat.tui.kv_resume`)."""
        self._app.kv.save(self._kv_target(), generating=self._app.generating)

    def restore_state(self) -> None:
        """Queue restoring the saved KV state of the conversation on screen."""
        self._app.kv.restore(self._kv_target())

    def _kv_target(self) -> KVTarget | None:
        app = self._app
        return kv_target(
            app.engine, self.store, self.conversation_id, self._sha256(), app.conversation
        )

    # ------------------------------------------------------------ other moments

    def at_exit(self) -> None:
        """The app is quitting: keep a reply cut short by quitting, leave the
        conversation."""
        app = self._app
        reply = app.replies.reply
        if app.generating and reply is not None and reply.text and self.conversation_id:
            # The worker's result would arrive after the app has gone: store the text
            # shown so far now, as a reply the user stopped.
            sampling = app.sampling.model_dump()
            sampling["seed"] = getattr(app.engine, "last_seed", None)
            sampling["repeat_guard"] = app.repeat_guard.model_dump()
            record = MessageRecord(
                role=Role.MODEL.value,
                text=reply.text,
                stop_reason=StopReason.CANCELLED.value,
                partial=True,
                model=self._model_name(),
                model_sha256=self._sha256(),
                sampling=sampling,
                reply_to=self.session.question_id(len(app.conversation.turns)),
                system=app.conversation.system,
            )
            # As when a reply is stopped with Esc: a retried reply replaces the old one.
            self.session.record_stopped(record)
        self.leaving()
        self.session.close()

    def reply_missing(self) -> bool:
        """True (and a hint) when a resumed conversation ends with an unanswered message."""
        if self._app.conversation.pending_user is None:
            return False
        self._app.notify(
            "The last message has no reply yet: Ctrl+R generates one, Ctrl+O edits it.",
            severity="warning",
        )
        return True

    def model_loaded(self) -> None:
        """A model (re)loaded and the app dropped the reply token ids: give back the
        stored ones that this very model file generated (same sha256)."""
        sha256 = self._sha256()
        cid = self.conversation_id
        if not sha256 or cid is None or self.store is None:
            return
        try:
            stored = to_conversation(self.store.get(cid), self.store.messages(cid), sha256)
        except Exception:  # a damaged row: the ids are an optimisation, never needed
            return
        for turn, saved in zip(self._app.conversation.turns, stored.turns, strict=False):
            if turn.role is not saved.role or turn.text != saved.text:
                break
            turn.token_ids = saved.token_ids

    def _sha256(self) -> str | None:
        return getattr(self._app.model_info, "sha256", None)

    def _model_name(self) -> str | None:
        return getattr(getattr(self._app.backend, "info", None), "model", None)
