"""One conversation being recorded, for ``ask`` and the app alike.

A :class:`ConversationSession` keeps the bookkeeping that recording a live conversation
needs beyond the store's own writes: which stored messages each turn came from, the
question a reply answers and the message each new one follows (edits and regenerated
replies are siblings on their own branch), whether this session created the
conversation, taking back what it wrote when a message cannot be answered, and deleting a
conversation it created and then left empty. After the first store failure it stops
saving (the conversation itself goes on). It never imports Textual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.errors import GemmaChatError
from gemma_chat.generation.events import ReplyDone
from gemma_chat.history.recording import Recorder
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.history.turns import stored_turns


class ConversationSession:
    """The recording of the conversation on screen (or of one ``ask`` run).

    Args:
        store: The open store; None when nothing is saved (yet: see :meth:`attach`).
        conversation_id: The stored conversation continued, if any.
        messages: Its stored messages (so that each turn knows its ids).
        enabled: Whether saving is on at all (``save_history``, ``--no-save``).
        on_error: Called with the first store failure, after which nothing more is
            saved; without it, the failure is raised.
        origin: What a conversation this session creates is marked as started from
            (``app`` or ``ask``).
    """

    def __init__(
        self,
        store: HistoryStore | Any | None,
        conversation_id: int | None = None,
        messages: Sequence[MessageRecord] = (),
        *,
        enabled: bool = True,
        on_error: Callable[[Exception], None] | None = None,
        origin: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.origin = origin
        self._on_error = on_error
        self._recorder: Recorder | None = None
        self._created: int | None = None
        self._written: set[int] = set()
        self.attach(store, conversation_id, messages)

    def attach(
        self,
        store: HistoryStore | Any | None,
        conversation_id: int | None,
        messages: Sequence[MessageRecord] = (),
    ) -> None:
        """Record into ``store`` (None: stop recording), continuing ``conversation_id``."""
        self._recorder = (
            Recorder(store, conversation_id, self.origin) if store is not None else None
        )
        self._saving = True
        # The stored message ids of each turn (aligned with the conversation's turns:
        # the branch on screen), and the turns a retry is regenerating from (they stay
        # stored on their own branch, and come back if the retry fails).
        self._turn_ids: list[list[int]] = [turn.ids for turn in stored_turns(list(messages))]
        self._replacing: tuple[int, ...] = ()
        self._retried: list[list[int]] = []
        # The stored turns an edited message is taking the place of (they stay on their
        # own branch; back on screen if the edit is taken back).
        self._edited: list[list[int]] = []

    # ------------------------------------------------------------------ what it knows

    @property
    def conversation_id(self) -> int | None:
        """The stored conversation, once there is one."""
        return self._recorder.conversation_id if self._recorder is not None else None

    @property
    def created(self) -> bool:
        """Whether this session created the stored conversation."""
        return self._created is not None and self._created == self.conversation_id

    @property
    def saving(self) -> bool:
        """Whether writes go to the store (False when off, or after a store failure)."""
        return self.enabled and self._saving and self._recorder is not None

    @property
    def turn_ids(self) -> list[list[int]]:
        """The stored message ids of each turn on screen (empty lists: not stored)."""
        return [list(ids) for ids in self._turn_ids]

    def turn_of(self, message_id: int) -> int | None:
        """The index of the turn a stored message belongs to."""
        return next((i for i, ids in enumerate(self._turn_ids) if message_id in ids), None)

    def question_id(self, turns: int) -> int | None:
        """The stored id of the question that turn ``turns - 1`` (a user turn) holds."""
        ids = self._turn_ids[turns - 1] if 0 < turns <= len(self._turn_ids) else []
        return ids[-1] if ids else None

    @property
    def replacing(self) -> tuple[int, ...]:
        """The stored reply a retry is regenerating (empty when none)."""
        return self._replacing

    # ------------------------------------------------------------------ recording

    def _save(self, write: Callable[[Recorder], object]) -> bool:
        """Run one store write; the first failure ends saving for this conversation."""
        if not self.saving:
            return False
        assert self._recorder is not None
        try:
            write(self._recorder)
        except Exception as exc:
            self._saving = False
            if self._on_error is None:
                raise
            self._on_error(exc)
            return False
        return True

    def _ids_after(self, turns: int) -> list[int]:
        """Forget the stored ids of the turns after the first ``turns``; return them."""
        gone = [i for ids in self._turn_ids[turns:] for i in ids]
        del self._turn_ids[turns:]
        return gone

    def record_user(
        self,
        conversation: Conversation,
        params: dict[str, Any],
        text: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int | None:
        """Store the conversation's newest turn, a user message (``text``: only this part
        of it, when a new message was joined to an unanswered one already stored; ``meta``:
        its attached files).

        Returns:
            The stored message's id (None when nothing was saved).
        """
        turns = len(conversation.turns)
        turn = conversation.turns[-1]
        assert turn.role is Role.USER
        fresh = self.conversation_id is None
        stored: list[MessageRecord] = []
        asked = turn.text if text is None else text
        # After the turn before it (an edit of a question is a sibling of the question),
        # or after the stored question it is joined to.
        joined = text is not None and len(self._turn_ids) >= turns
        parent = self._tail(turns if joined else turns - 1)
        if not self._save(
            lambda r: stored.append(r.question(asked, conversation.system, params, parent, meta))
        ):
            return None
        message_id = stored[0].id
        if fresh:
            self._created = self.conversation_id
        if joined:
            del self._turn_ids[turns:]
            self._turn_ids[turns - 1].append(message_id)  # joined to the stored question
        else:
            self._ids_after(turns - 1)
            self._turn_ids.append([message_id])
        self._written.add(message_id)
        return message_id

    def record_reply(
        self,
        done: ReplyDone,
        conversation: Conversation,
        *,
        model: str | None,
        model_sha256: str | None,
        meta: dict[str, Any] | None = None,
    ) -> int | None:
        """Store a finished or stopped reply after its question (a regenerated reply is
        a sibling of the one it regenerates). ``conversation`` may already end with the
        reply. ``meta`` is kept with it (a long input's notes).

        Returns:
            The stored reply's id (None when nothing was saved).
        """
        turns = len(conversation.turns)
        if conversation.turns and conversation.turns[-1].role is Role.MODEL:
            turns -= 1  # the reply is on screen already: its question is the turn before
        self._replacing = ()
        stored: list[MessageRecord | None] = []

        def write(recorder: Recorder) -> None:
            stored.append(
                recorder.reply(
                    done,
                    model=model,
                    model_sha256=model_sha256,
                    reply_to=self.question_id(turns),
                    system=conversation.system,
                    meta=meta,
                )
            )

        if not self._save(write) or not stored or stored[0] is None:
            return None
        self._edited = []  # the edited message has its reply: no going back
        reply_id = stored[0].id
        self._ids_after(turns)
        self._turn_ids.append([reply_id])
        self._written.add(reply_id)
        return reply_id

    def record_stopped(self, record: MessageRecord) -> bool:
        """Store a reply cut short by quitting (``record``, built by the caller from
        what was shown, after its question ``reply_to``); then stop saving, in case the
        reply's own result still arrives."""
        cid = self.conversation_id
        if cid is None:
            return False
        record = replace(record, parent_id=record.reply_to)
        if self._save(lambda recorder: recorder.store.add(cid, record)):
            self._saving = False
            return True
        return False

    def record_settings(self, system: str | None, params: dict[str, Any]) -> None:
        """Store a changed system prompt or parameters."""
        self._save(lambda recorder: recorder.settings(system, params))

    def begin_retry(self, turns_kept: int) -> None:
        """The reply after the first ``turns_kept`` turns (and what followed it) is
        being regenerated: the new reply is stored as its sibling, and it stays on its
        own branch."""
        self._retried = self._turn_ids[turns_kept:]
        self._replacing = tuple(self._ids_after(turns_kept))

    def cancel_retry(self) -> None:
        """The regenerated reply failed: the branch it was taken from is shown again."""
        if self._replacing:
            self._back_to(self._retried)
            self._replacing = ()

    def begin_edit(self, turns_kept: int) -> None:
        """An edited message is being sent in place of the turns after the first
        ``turns_kept``: it is stored as a sibling of the question it edits, and the
        turns it takes the place of stay on their own branch."""
        self._edited = self._turn_ids[turns_kept:]
        del self._turn_ids[turns_kept:]

    def _tail(self, turns: int) -> int | None:
        """The last stored message of the first ``turns`` turns (None: none)."""
        for ids in reversed(self._turn_ids[:turns]):
            if ids:
                return ids[-1]
        return None

    def _back_to(self, turns: list[list[int]]) -> None:
        """Show ``turns`` again after the turns kept, and make their branch the one
        viewed (a failed edit or retry leaves the branch it started from)."""
        self._turn_ids.extend(turns)
        leaf = self._tail(len(self._turn_ids))
        cid = self.conversation_id
        if turns and leaf is not None and cid is not None:
            self._save(lambda recorder: recorder.store.view(cid, leaf))

    def unsend(self, turns_kept: int) -> None:
        """The reply failed and its question (the turns after the first ``turns_kept``)
        was taken back. What this session wrote, and no stored reply answers, is
        deleted; anything from before (or a retried question, whose old reply is still
        stored) stays."""
        gone = self._ids_after(turns_kept)
        retried, self._replacing = self._replacing, ()
        edited, self._edited = self._edited, []
        mine = [i for i in gone if i in self._written]
        deleted: list[int] = []
        if mine and not retried:
            self._save(lambda recorder: deleted.extend(recorder.delete(mine)))
            self._written.difference_update(deleted)
        left = [i for i in gone if i not in deleted]
        if edited:
            self._back_to(edited)  # an edit that failed: the exchange it edited is back
        elif left:  # still stored and unanswered: a new question is joined to them
            self._turn_ids.append(left)

    def forget(self) -> None:
        """The stored conversation was deleted: there is nothing left to record into."""
        if self._recorder is not None:
            self._recorder.conversation_id = None

    def close(self) -> bool:
        """Delete the conversation if this session created it and it is empty (its only
        message was edited away or failed): an empty row would clutter the history.
        Conversations from elsewhere are never touched.

        Returns:
            Whether it was deleted.
        """
        recorder = self._recorder
        if recorder is None or not self.created or not self._saving:
            return False
        with contextlib.suppress(GemmaChatError):
            if recorder.store.delete_if_empty(recorder.conversation_id):
                recorder.conversation_id = None
                return True
        return False
