"""From stored messages to the turns of a conversation that can be continued.

The messages of one branch (root to leaf) usually alternate user, model, user, model;
but a process can die before a reply (a question without an answer, joined with the
next question, as they will be answered together). Histories from before the tree
(schema 4) were a list in the order rows were written, where two processes adding to one
conversation at once interleaved their rows (user A, user B, reply A, reply B): a reply
names the question it answers (``reply_to``), so each reply goes back with its question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gemma_chat.chat.conversation import Conversation, Role, StopReason, Summary
from gemma_chat.history.records import ConversationRecord, MessageRecord


class Pairable(Protocol):
    """What pairing needs of a message (a stored one, or a row being migrated)."""

    @property
    def id(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def reply_to(self) -> int | None: ...


@dataclass
class _Exchange:
    questions: list[Any]
    reply: Any = None


@dataclass
class StoredTurn:
    """One turn of the conversation and the stored messages it came from.

    Attributes:
        role: The turn's role.
        messages: One message, or several questions answered together.
    """

    role: Role
    messages: list[Any] = field(default_factory=list)
    """The :class:`MessageRecord` (or other :class:`Pairable`) it came from."""

    @property
    def ids(self) -> list[int]:
        """The stored message ids."""
        return [message.id for message in self.messages]

    @property
    def text(self) -> str:
        """The turn's text (joined questions are separated by a blank line)."""
        return "\n\n".join(message.text for message in self.messages)


def stored_turns(messages: Sequence[Pairable]) -> list[StoredTurn]:
    """Pair questions and replies into alternating turns (see the module docstring).

    A reply whose question is gone, or answered already, is left out of the turns (it
    stays in the store, and in ``history show`` and exports).
    """
    exchanges: list[_Exchange] = []
    by_question: dict[int, _Exchange] = {}
    for message in messages:
        if message.role == Role.USER.value:
            exchange = _Exchange([message])
            exchanges.append(exchange)
            by_question[message.id] = exchange
            continue
        if message.reply_to is not None:
            target = by_question.get(message.reply_to)
        else:  # written before replies named their question: the latest open one
            target = next((ex for ex in reversed(exchanges) if ex.reply is None), None)
        if target is not None and target.reply is None:
            target.reply = message
    turns: list[StoredTurn] = []
    waiting: list[Any] = []
    for exchange in exchanges:
        waiting += exchange.questions
        if exchange.reply is not None:
            turns.append(StoredTurn(Role.USER, waiting))
            turns.append(StoredTurn(Role.MODEL, [exchange.reply]))
            waiting = []
    if waiting:
        turns.append(StoredTurn(Role.USER, waiting))
    return turns


def to_conversation(
    record: ConversationRecord, messages: list[MessageRecord], model_sha256: str | None
) -> Conversation:
    """The core :class:`Conversation` for a stored one, ready to continue.

    Reply token ids are kept only for the model that generated them (``model_sha256``);
    for another model the text is tokenized again. A stop reason this version does not
    know (a newer gemma-chat, an edited export) reads as ``end_of_turn``.
    """
    conversation = Conversation(system=record.system)
    for turn in stored_turns(messages):
        if turn.role is Role.USER:
            conversation.add_user(turn.text, _typed(turn.messages))
            _restore_summary(conversation, turn.messages)
            continue
        (reply,) = turn.messages
        same_model = model_sha256 is not None and reply.model_sha256 == model_sha256
        added = conversation.add_model(
            reply.text,
            _stop_reason(reply.stop_reason),
            reply.token_ids if same_model else None,
        )
        added.model = reply.model  # shown above the reply
    return conversation


def _restore_summary(conversation: Conversation, messages: list[MessageRecord]) -> None:
    """A compaction stored with a message (``/compact``): the earlier turns it stands for
    are summarised again in the prompts (a meta of another shape is ignored)."""
    for message in messages:
        compacted = (message.meta or {}).get("compacted")
        if not isinstance(compacted, dict):
            continue
        turns, text = compacted.get("turns"), compacted.get("summary")
        before = len(conversation.turns) - 1  # the turns before this message
        if isinstance(turns, int) and isinstance(text, str) and 0 < turns <= before:
            conversation.summary = Summary(turns - turns % 2, text)


def _typed(messages: list[MessageRecord]) -> str | None:
    """What was typed for a message a saved prompt's template made (kept in its meta)."""
    typed = (messages[0].meta or {}).get("typed") if len(messages) == 1 else None
    return typed if isinstance(typed, str) else None


def _stop_reason(value: str | None) -> StopReason:
    try:
        return StopReason(value or StopReason.END_OF_TURN.value)
    except ValueError:
        return StopReason.END_OF_TURN
