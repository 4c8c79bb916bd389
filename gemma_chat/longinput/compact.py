"""Compacting a long conversation: the model summarises its oldest turns (``/compact``,
and ``context_policy = "compact"`` when a conversation no longer fits).

The summary is folded into the first user turn that is kept, after the system prompt
(Gemma has no system role; see :meth:`Conversation.prompt_view`). The turns it stands for
stay in the conversation and in the history; prompts leave them out. The newest
``keep`` user/model pairs are never compacted.

The summarising call is one ordinary reply of the same engine and stop rules, on a
prompt of its own::

    Summarise our conversation so far in one short paragraph. Keep every name, number,
    fact, decision and open question; leave out greetings.

    User: {text}

    Gemma: {text}
    ...
"""

from __future__ import annotations

import threading

from gemma_chat.chat.context import reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, Summary, Turn
from gemma_chat.errors import ContextError
from gemma_chat.generation.engine import Engine
from gemma_chat.generation.events import ReplyDone

INSTRUCTION = (
    "Summarise our conversation so far in one short paragraph. Keep every name, number, "
    "fact, decision and open question; leave out greetings."
)


def summary_prompt(turns: list[Turn], earlier: Summary | None = None) -> str:
    """The summarising call's message: the instruction, then the transcript (an earlier
    summary first, when there is one)."""
    lines = [] if earlier is None else [f"Earlier: {earlier.text.strip()}"]
    for turn in turns:
        who = "User" if turn.role is Role.USER else "Gemma"
        lines.append(f"{who}: {turn.text.strip()}")
    return INSTRUCTION + "\n\n" + "\n\n".join(lines)


def compactable(conversation: Conversation, keep: int = 1) -> int:
    """How many turns (from the start) a compaction would stand for: every whole
    user/model pair but the newest ``keep`` ones, and none that a summary already
    covers (0: nothing to compact)."""
    turns = conversation.turns
    pairs = len(turns) // 2  # a pending user turn is never compacted
    end = max(0, pairs - keep) * 2
    start = conversation.summary.turns if conversation.summary else 0
    return end if end > start else 0


def would_drop(engine: Engine, conversation: Conversation) -> bool:
    """Whether the next prompt would leave turns out to fit the context."""
    reserve = reply_reserve(engine.sampling.max_tokens, engine.n_ctx)
    return engine.count_tokens(conversation) > engine.n_ctx - reserve


def summarise(
    engine: Engine,
    conversation: Conversation,
    turns: int,
    cancel: threading.Event | None = None,
) -> tuple[ReplyDone, int]:
    """Ask the model for a summary of the first ``turns`` turns (fewer, by whole pairs
    from the newest, when their transcript does not fit one prompt).

    Returns:
        The summarising reply, and how many turns it stands for.

    Raises:
        ContextError: Not even the oldest pair fits one prompt.
    """
    earlier = conversation.summary
    start = earlier.turns if earlier else 0
    reserve = reply_reserve(engine.sampling.max_tokens, engine.n_ctx)
    while turns > start:
        prompt = Conversation(
            turns=[Turn(Role.USER, summary_prompt(conversation.turns[start:turns], earlier))]
        )
        if engine.count_tokens(prompt) <= engine.n_ctx - reserve:
            done: ReplyDone | None = None
            for event in engine.stream(prompt, cancel):
                if isinstance(event, ReplyDone):
                    done = event
            assert done is not None
            return done, turns
        turns -= 2
    raise ContextError("the oldest turns are too long to summarise in this context")
