"""Fitting a conversation into the context window before each reply."""

from __future__ import annotations

from dataclasses import dataclass

from gemma_chat.chat.conversation import Conversation
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.errors import ContextError

CTX_STEP = 256
"""llama.cpp rounds n_ctx up to a multiple of this; we do it first so both agree."""
DEFAULT_MAX_CTX = 8192
"""Gemma 2's trained context, and the default cap for models trained on more."""


def round_ctx(n_ctx: int) -> int:
    """Round a context size up to a multiple of 256."""
    return -(-n_ctx // CTX_STEP) * CTX_STEP


def default_ctx(trained_ctx: int | None) -> int:
    """The default n_ctx: min(trained context, 8192), rounded to a multiple of 256."""
    if not trained_ctx or trained_ctx <= 0:
        return DEFAULT_MAX_CTX
    return max(CTX_STEP, min(trained_ctx, DEFAULT_MAX_CTX) // CTX_STEP * CTX_STEP)


def reply_reserve(max_tokens: int, n_ctx: int) -> int:
    """Tokens kept free for the reply: max_tokens, but never more than a quarter of n_ctx."""
    return max(1, min(max_tokens, n_ctx // 4))


@dataclass(frozen=True)
class FittedPrompt:
    """A rendered prompt that fits the context.

    Attributes:
        ids: The prompt's token ids.
        dropped_turns: How many of the oldest turns were left out to make it fit.
        reserve: Tokens kept free for the reply.
    """

    ids: list[int]
    dropped_turns: int
    reserve: int


def fit_prompt(
    template: GemmaTemplate, conversation: Conversation, n_ctx: int, reserve: int
) -> FittedPrompt:
    """Render the conversation, dropping the oldest user/model pairs until it fits.

    The system prompt is never dropped: it folds into whichever user turn comes first.
    The newest user message is never dropped.

    Args:
        template: The Gemma template for the model's tokenizer.
        conversation: A conversation ending with a pending user turn.
        n_ctx: The context size.
        reserve: Tokens to keep free for the reply.

    Raises:
        ContextError: Even the newest message alone does not fit.
        ValueError: The conversation does not end with a user turn.
    """
    turns, system = conversation.prompt_view()  # a summary stands for the oldest turns
    if conversation.pending_user is None:
        raise ValueError("the conversation must end with a user turn")
    budget = n_ctx - reserve
    fixed = 1 + len(template.generation_prompt())  # BOS and the model header
    # Token counts of every turn but the first, unfolded; the first turn that is kept has
    # the system prompt folded in, so it is counted per start. Each turn is tokenized once.
    sizes = [0] + [len(template.turn_ids(turn)) for turn in turns[1:]]
    total = 0
    for start in range(0, len(turns), 2):
        first = template.turn_ids(turns[start], system)
        total = fixed + len(first) + sum(sizes[start + 1 :])
        if total <= budget:
            ids = template.render(turns[start:], system)
            return FittedPrompt(ids, start, reserve)
    raise ContextError(
        f"the message is too long: {total} tokens, but the context holds {n_ctx} "
        f"with {reserve} kept for the reply (try --ctx or a shorter input)"
    )
