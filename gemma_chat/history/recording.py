"""Recording a live conversation into the store as it happens (the app and ``ask``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gemma_chat.chat.conversation import Conversation, Role
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.events import ReplyDone
from gemma_chat.history.records import AFTER_ACTIVE
from gemma_chat.history.store import ConversationRecord, HistoryStore, MessageRecord


def params_of(sampling: Sampling, repeat_guard: RepeatGuard) -> dict[str, Any]:
    """The parameters stored with a conversation and restored on resume."""
    return {"sampling": sampling.model_dump(), "repeat_guard": repeat_guard.model_dump()}


def restore_params(
    record: ConversationRecord, sampling: Sampling, repeat_guard: RepeatGuard
) -> tuple[Sampling, RepeatGuard]:
    """A stored conversation's parameters over the given ones.

    Values this version does not know (or no longer accepts) are ignored, so an old
    or hand-edited record never blocks a resume.
    """
    stored = record.params or {}
    return (
        _merge(sampling, stored.get("sampling")),
        _merge(repeat_guard, stored.get("repeat_guard")),
    )


def _merge(current: Any, stored: Any) -> Any:
    if not isinstance(stored, dict):
        return current
    values = current.model_dump()
    values.update({key: value for key, value in stored.items() if key in values})
    try:
        return type(current).model_validate(values)
    except ValueError:
        return current


def reply_message(
    done: ReplyDone,
    *,
    model: str | None,
    model_sha256: str | None,
    reply_to: int | None = None,
    system: str | None = None,
    sampling: Sampling | None = None,
) -> MessageRecord:
    """The record of a finished (or stopped) reply: with the model, the sampling
    parameters, seed and repeat guard it was generated with, the system prompt and the
    question it answers, it is enough to generate the same reply again.

    ``sampling`` is only a fallback for a reply that does not carry its own.
    """
    stats = done.stats
    used = (done.sampling or sampling or Sampling()).model_dump()
    used["seed"] = stats.seed  # the seed actually drawn
    if done.repeat_guard is not None:
        used["repeat_guard"] = done.repeat_guard.model_dump()
    return MessageRecord(
        role=Role.MODEL.value,
        text=done.text,
        stop_reason=done.stop_reason.value,
        partial=done.stop_reason.value != "end_of_turn",
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        ttft_s=stats.ttft_s,
        tokens_per_s=stats.tokens_per_s,
        model=model,
        model_sha256=model_sha256,
        sampling=used,
        token_ids=done.token_ids,
        reply_to=reply_to,
        system=system,
    )


def with_meta(record: MessageRecord, meta: dict[str, Any]) -> MessageRecord:
    """``record`` carrying ``meta`` (kept with the message: attachments, notes)."""
    return replace(record, meta={**(record.meta or {}), **meta})


class Recorder:
    """Mirrors one conversation into the store, message by message.

    The conversation row is created with the first message, so opening the app and
    quitting stores nothing. Every write is committed before the call returns, and
    messages are only ever deleted by id (see :mod:`gemma_chat.history.store`).

    Attributes:
        store: The store.
        conversation_id: The stored conversation, once there is one.
        origin: What a conversation it creates is marked as started from.
    """

    def __init__(
        self, store: HistoryStore, conversation_id: int | None = None, origin: str | None = None
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.origin = origin

    def user(self, conversation: Conversation, params: dict[str, Any]) -> MessageRecord:
        """Store the conversation's newest turn, a user message.

        Returns:
            The stored message (with its id).
        """
        turn = conversation.turns[-1]
        assert turn.role is Role.USER
        return self.question(turn.text, conversation.system, params)

    def question(
        self,
        text: str,
        system: str | None,
        params: dict[str, Any],
        parent: int | None = AFTER_ACTIVE,
        meta: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """Store a user message after ``parent`` (None: the start of the conversation,
        an edit of its first question), creating the conversation if needed (``meta``:
        its attached files)."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create(
                system=system, params=params, origin=self.origin
            )
            parent = None
        message = MessageRecord(Role.USER.value, text, meta=meta or None, parent_id=parent)
        return self.store.add(self.conversation_id, message)

    def reply(
        self,
        done: ReplyDone,
        *,
        model: str | None,
        model_sha256: str | None,
        reply_to: int | None,
        system: str | None,
        meta: dict[str, Any] | None = None,
    ) -> MessageRecord | None:
        """Store a finished or stopped reply after its question (``reply_to``; a
        regenerated reply is a sibling of the one it regenerates)."""
        if self.conversation_id is None:
            return None
        record = reply_message(
            done, model=model, model_sha256=model_sha256, reply_to=reply_to, system=system
        )
        if meta:
            record = with_meta(record, meta)
        return self.store.add(self.conversation_id, replace(record, parent_id=reply_to))

    def delete(self, ids: list[int]) -> list[int]:
        """Delete stored messages by id that nothing follows yet (a question whose reply
        failed; see :meth:`~gemma_chat.history.store.HistoryStore.delete_unanswered`).

        Returns:
            The ids deleted.
        """
        if self.conversation_id is None or not ids:
            return []
        return self.store.delete_unanswered(self.conversation_id, ids)

    def settings(self, system: str | None, params: dict[str, Any]) -> None:
        """Store a changed system prompt or parameters."""
        if self.conversation_id is not None:
            self.store.set_settings(self.conversation_id, system, params)
