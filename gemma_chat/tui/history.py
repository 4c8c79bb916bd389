"""Conversation history in the app (an App mixin): the store is opened, and the chat is
recorded as it happens. Switching conversations is :mod:`gemma_chat.tui.conversations`.

Store writes take milliseconds, so they run on the UI thread. A store error never stops
the chat or touches what is on screen: it is shown once, and the conversation is no
longer saved. An unreadable history file gets a dialog that names it; it is only ever
renamed, never deleted or overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gemma_chat.conversation import Conversation, Role, StopReason
from gemma_chat.errors import GemmaChatError
from gemma_chat.history.recording import Recorder, params_of
from gemma_chat.history.store import (
    CorruptStore,
    HistoryStore,
    MessageRecord,
    move_aside,
    store_file,
    to_conversation,
)
from gemma_chat.tui.screens.dialogs import MOVE_ASIDE, CorruptStoreScreen


def row_ends(messages: list[MessageRecord]) -> tuple[int, list[int]]:
    """How stored messages map onto the turns :func:`to_conversation` builds from them.

    Returns:
        The number of rows before the first turn (replies without a question), and for
        each turn the number of rows up to and including it. Usually turn ``i`` is row
        ``i``; two user messages in a row (a reply was lost) form one turn.
    """
    lead, ends, pending = 0, [], False
    for count, message in enumerate(messages, start=1):
        if message.role == Role.USER.value:
            if pending:
                ends[-1] = count
            else:
                ends.append(count)
            pending = True
        elif pending:
            ends.append(count)
            pending = False
        elif ends:
            ends[-1] = count  # a reply without a question stays with the turn before
        else:
            lead = count
    return lead, ends


class HistorySupport:
    """The store, and recording the conversation on screen into it."""

    settings: Any
    conversation: Conversation
    sampling: Any
    repeat_guard: Any
    engine: Any
    backend: Any
    model_info: Any
    last_done: Any
    generating: bool
    chat: Any
    prompt: Any
    status: Any
    # From ConversationSwitching:
    _refresh_sidebar: Callable[[], None]
    resume_conversation: Callable[..., Any]
    # From KVStateSupport:
    save_conversation_state: Callable[[], None]

    def setup_history(self, store: HistoryStore | None, resume: int | None) -> None:
        """Remember the store (None: open the default one on mount) and what to resume."""
        self.store = store
        self.recorder: Recorder | None = None
        self._resume_at_start = resume
        self._saving = True
        self._history_note = ""
        self._lead_rows = 0
        self._row_ends: list[int] = []
        self._found_timer: Any = None
        self._hidden_turns = 0
        self._created_id: int | None = None

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation on screen, once it has been stored."""
        return self.recorder.conversation_id if self.recorder is not None else None

    # ------------------------------------------------------------- opening the store

    async def open_history(self) -> None:
        """Open the store (on mount) and resume the conversation asked for, if any."""
        if self.store is None:
            path = store_file()
            if not self.settings.save_history and not path.exists():
                self._history_note = "History saving is off (save_history = false)."
                if self._resume_at_start is not None:
                    self.notify(  # type: ignore[attr-defined]
                        f"There is no history yet to resume {self._resume_at_start} from.",
                        severity="error",
                    )
                return
            try:
                self.store = HistoryStore(path)
            except CorruptStore as exc:
                bad = exc.path

                async def answered(answer: str | None) -> None:
                    await self._corrupt_answered(bad, answer or "")

                self.push_screen(  # type: ignore[attr-defined]
                    CorruptStoreScreen(str(bad), str(exc)), answered
                )
                return
            except GemmaChatError as exc:
                self._history_unavailable(str(exc))
                return
        await self._store_ready()

    async def _store_ready(self) -> None:
        assert self.store is not None
        self.recorder = Recorder(self.store, self.conversation_id)
        self._refresh_sidebar()
        if self._resume_at_start is not None:
            await self.resume_conversation(self._resume_at_start)

    async def _corrupt_answered(self, path: Path, answer: str) -> None:
        if answer != MOVE_ASIDE:
            self._history_unavailable(f"{path} is unreadable and was left as it is")
            return
        try:
            moved = move_aside(path)
            self.store = HistoryStore(path)
        except GemmaChatError as exc:
            self._history_unavailable(str(exc))
            return
        self.notify(  # type: ignore[attr-defined]
            f"The unreadable history was moved to {moved}; a new history has started.",
            markup=False,
            timeout=10,
        )
        await self._store_ready()

    def _history_unavailable(self, reason: str) -> None:
        self.store = None
        self._history_note = f"History is not saved this session: {reason}."
        self.notify(  # type: ignore[attr-defined]
            self._history_note, severity="warning", markup=False, timeout=15
        )
        self._refresh_sidebar()

    # ------------------------------------------------------------------ recording

    def _save(self, write: Callable[[Recorder], object]) -> bool:
        """Run one store write; the first failure is shown and ends saving for this
        conversation (what is on screen stays)."""
        if not (self.settings.save_history and self._saving and self.recorder is not None):
            return False
        try:
            write(self.recorder)
        except GemmaChatError as exc:
            self._saving = False
            self.notify(  # type: ignore[attr-defined]
                f"Could not save to the history ({exc}); this conversation is no longer "
                "being saved, but stays on screen.",
                severity="error",
                markup=False,
                timeout=15,
            )
            return False
        return True

    def _rows(self, turns: int) -> int:
        """Stored rows holding the first ``turns`` turns."""
        if turns <= 0:
            return self._lead_rows
        if turns <= len(self._row_ends):
            return self._row_ends[turns - 1]
        return self._rows(len(self._row_ends)) + turns - len(self._row_ends)

    def _record_user(self) -> None:
        """Store the message just sent."""
        params = params_of(self.sampling, self.repeat_guard)
        fresh = self.conversation_id is None
        if self._save(lambda recorder: recorder.user(self.conversation, params)):
            if fresh:
                self._created_id = self.conversation_id
            self._row_ends.append(self._rows(len(self.conversation.turns) - 1) + 1)
            self._refresh_sidebar()

    def _record_reply(self, done: Any) -> None:
        """Store a finished or stopped reply."""
        model = getattr(getattr(self.backend, "info", None), "model", None)
        sha256 = getattr(self.model_info, "sha256", None)

        def write(recorder: Recorder) -> None:
            recorder.reply(done, model=model, model_sha256=sha256, sampling=self.sampling)

        if self._save(write):
            self._row_ends.append(self._rows(len(self.conversation.turns) - 1) + 1)
            self._refresh_sidebar()

    def _record_truncate(self) -> None:
        """Drop stored messages the conversation no longer has (retry, edit, a failed
        reply)."""
        turns = len(self.conversation.turns)
        keep = self._rows(turns)
        if self._save(lambda recorder: recorder.truncate(keep)):
            del self._row_ends[turns:]

    def _record_settings(self) -> None:
        """Store a changed system prompt or parameters."""
        params = params_of(self.sampling, self.repeat_guard)
        self._save(lambda recorder: recorder.settings(self.conversation.system, params))

    def _leaving_conversation(self) -> None:
        """Called just before the conversation on screen is left: the user opens another
        one, starts a new one, or quits. The model's KV state for it is saved (in the
        background), so that reopening it later does not evaluate its whole history
        again (see :mod:`gemma_chat.tui.kv_resume`)."""
        self.save_conversation_state()

    def _begin(self, conversation_id: int | None, messages: list[MessageRecord]) -> None:
        """Point the recorder at the conversation now on screen."""
        self._forget_if_empty()
        self.recorder = Recorder(self.store, conversation_id) if self.store else None
        self._saving = True
        self._lead_rows, self._row_ends = row_ends(messages)

    def _forget_if_empty(self) -> None:
        # A conversation started here whose only message was edited away or failed
        # leaves an empty row behind; it would clutter the sidebar with a title and no
        # messages. Conversations from elsewhere are never touched.
        cid = self.conversation_id
        if cid is None or cid != self._created_id or self.store is None or not self._saving:
            return
        try:
            if self.store.get(cid).message_count == 0:
                self.store.delete(cid)
        except GemmaChatError:
            pass

    def history_at_exit(self) -> None:
        """The app is quitting: keep a reply cut short by quitting, leave the
        conversation."""
        reply = getattr(self, "_reply", None)
        if self.generating and reply is not None and reply.text and self.conversation_id:
            # The worker's result would arrive after the app has gone: store the text
            # shown so far now, as a reply the user stopped.
            record = MessageRecord(
                role=Role.MODEL.value,
                text=reply.text,
                stop_reason=StopReason.CANCELLED.value,
                partial=True,
                model=getattr(getattr(self.backend, "info", None), "model", None),
                model_sha256=getattr(self.model_info, "sha256", None),
                sampling=self.sampling.model_dump(),
            )
            cid = self.conversation_id
            if self._save(lambda recorder: recorder.store.add(cid, record)):
                self._saving = False  # in case the worker's result still gets handled
        self._leaving_conversation()
        self._forget_if_empty()

    def _reply_missing(self) -> bool:
        """True (and a hint) when a resumed conversation ends with an unanswered message."""
        if self.conversation.pending_user is None:
            return False
        self.notify(  # type: ignore[attr-defined]
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
        except GemmaChatError:
            return
        for turn, saved in zip(self.conversation.turns, stored.turns, strict=False):
            if turn.role is not saved.role or turn.text != saved.text:
                break
            turn.token_ids = saved.token_ids
