"""Recording a live conversation into the store as it happens (the app and ``ask``)."""

from __future__ import annotations

from typing import Any

from gemma_chat.conversation import Conversation, Role
from gemma_chat.engine import ReplyDone
from gemma_chat.history.store import ConversationRecord, HistoryStore, MessageRecord
from gemma_chat.settings import RepeatGuard, Sampling


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
    sampling: Sampling,
) -> MessageRecord:
    """The record of a finished (or stopped) reply."""
    stats = done.stats
    used = sampling.model_dump()
    used["seed"] = stats.seed  # the seed actually drawn, so the reply can be reproduced
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
    )


class Recorder:
    """Mirrors one conversation into the store, message by message.

    The conversation row is created with the first message, so opening the app and
    quitting stores nothing. Every write is committed before the call returns.

    Attributes:
        store: The store.
        conversation_id: The stored conversation, once there is one.
    """

    def __init__(self, store: HistoryStore, conversation_id: int | None = None) -> None:
        self.store = store
        self.conversation_id = conversation_id

    def user(self, conversation: Conversation, params: dict[str, Any]) -> None:
        """Store the conversation's newest turn, a user message."""
        turn = conversation.turns[-1]
        assert turn.role is Role.USER
        if self.conversation_id is None:
            self.conversation_id = self.store.create(system=conversation.system, params=params)
        self.store.add(self.conversation_id, MessageRecord(role=turn.role.value, text=turn.text))

    def reply(
        self,
        done: ReplyDone,
        *,
        model: str | None,
        model_sha256: str | None,
        sampling: Sampling,
    ) -> None:
        """Store a finished or stopped reply."""
        if self.conversation_id is None:
            return
        self.store.add(
            self.conversation_id,
            reply_message(done, model=model, model_sha256=model_sha256, sampling=sampling),
        )

    def truncate(self, keep: int) -> None:
        """Drop stored messages after the first ``keep`` (retry, edit)."""
        if self.conversation_id is not None:
            self.store.truncate(self.conversation_id, keep)

    def settings(self, system: str | None, params: dict[str, Any]) -> None:
        """Store a changed system prompt or parameters."""
        if self.conversation_id is not None:
            self.store.set_settings(self.conversation_id, system, params)
