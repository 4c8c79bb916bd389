"""Token counts without a tokenizer: the estimates and the context fit of a text backend
(a remote server), and the server's own ``usage``, when it sends a plausible one.

The prompt is the Gemma template rendered as text (:mod:`gemma_chat.chat.template_text`).
Without a tokenizer, token counts are estimates: UTF-8 bytes / 3, rounded up, which
slightly over-counts English for Gemma's tokenizer (about 4 bytes a token) so that the
context fit errs on the safe side. The server's ``usage`` replaces the estimate in the
stats when it is sent and plausible (whole numbers from 0 to 2**31 - 1; anything else is
ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

from gemma_chat.chat.conversation import Conversation, Role, Turn
from gemma_chat.chat.template_text import generation_prompt, render_text, turn_text
from gemma_chat.errors import ContextError

BYTES_PER_TOKEN = 3
"""The estimate's ratio; Gemma averages about 4 bytes a token on English text."""


def estimate_tokens(text: str) -> int:
    """An estimate of the tokens ``text`` takes: UTF-8 bytes / 3, rounded up."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def count_text_tokens(conversation: Conversation, draft: str = "") -> int:
    """The estimated tokens of the conversation (plus a draft), for the context meter."""
    view, system = conversation.prompt_view()
    turns = list(view)
    if draft.strip() and conversation.pending_user is None:
        turns.append(Turn(Role.USER, draft))
    text = render_text(turns, system)
    if not turns or turns[-1].role is not Role.USER:
        text = text.removesuffix(generation_prompt())  # no reply is pending
    return 1 + estimate_tokens(text)  # 1: BOS


def fit_text(
    conversation: Conversation, n_ctx: int, reserve: int
) -> tuple[Sequence[Turn], int, int]:
    """Drop the oldest user/model pairs until the estimated prompt fits.

    Returns the turns kept, how many were dropped, and the estimated prompt tokens.

    Raises:
        ContextError: Even the newest message alone does not fit.
    """
    turns, system = conversation.prompt_view()  # a summary stands for the oldest turns
    if conversation.pending_user is None:
        raise ValueError("the conversation must end with a user turn")
    budget = n_ctx - reserve
    fixed = 1 + estimate_tokens(generation_prompt())
    sizes = [0] + [estimate_tokens(turn_text(turn)) for turn in turns[1:]]
    total = 0
    for start in range(0, len(turns), 2):
        total = fixed + estimate_tokens(turn_text(turns[start], system)) + sum(sizes[start + 1 :])
        if total <= budget:
            return turns[start:], start, total
    raise ContextError(
        f"the message is too long: about {total} tokens (estimated), but the context "
        f"holds {n_ctx} with {reserve} kept for the reply (try --ctx or a shorter input)"
    )


MAX_USAGE = 2**31 - 1
"""The largest token count believed from a server: no context comes near it, and every
count stays far inside what SQLite, JSON and the stats can hold."""


def _count(value: object) -> int | None:
    """A token count from a server: a non-negative int no larger than :data:`MAX_USAGE`
    (a bool, float, string or absurd number is no count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_USAGE else None


def usage_counts(usage: dict[str, object] | None) -> tuple[int, int, int] | None:
    """(prompt, completion, cached prompt) tokens from a server's ``usage``, if complete
    and plausible; None makes the stats fall back to gemma-chat's own estimates.

    A server's numbers are untrusted: a count of 2**70 once overflowed the history
    store's INTEGER column and failed the reply after it had been shown.
    """
    if not usage:
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return prompt, completion, min(cached or 0, prompt)
