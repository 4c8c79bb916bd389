"""The engine's text path: one reply from a backend that takes text (a remote server).

The prompt is the Gemma template rendered as text (:mod:`gemma_chat.chat.template_text`) with
control-token names in the conversation neutralised; the stop strings are the turn
markers. The streamed text goes through the same rules as the local path:

* :class:`~gemma_chat.generation.textstream.MarkerFilter`: a server that ignores the stop strings
  and spells a marker as text is stopped there, and nothing after the marker is shown;
* the repetition guard, fed one pseudo token per streamed chunk (the hash of the chunk's
  text): servers stream one token per chunk, so a looping reply repeats chunks;
* max_tokens, counted in chunks (the server enforces it as well);
* the cancel event; and ``failed`` when the connection breaks after some text arrived
  (the partial text is kept; a failure before any text raises ``RemoteError``).

Without a tokenizer, token counts are estimates: UTF-8 bytes / 3, rounded up, which
slightly over-counts English for Gemma's tokenizer (about 4 bytes a token) so that the
context fit errs on the safe side. The server's ``usage`` replaces the estimate in the
stats when it is sent and plausible (whole numbers from 0 to 2**31 - 1; anything else is
ignored).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from gemma_chat.backend.base import Cancelled
from gemma_chat.backend.remote import RemoteError
from gemma_chat.chat.context import reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.chat.template_text import (
    STOP_STRINGS,
    chat_messages,
    generation_prompt,
    render_text,
    turn_text,
)
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.errors import ContextError
from gemma_chat.generation.repetition import RepetitionDetector
from gemma_chat.generation.textstream import MarkerFilter

if TYPE_CHECKING:
    from gemma_chat.generation.events import ReplyDone, TextDelta


class EngineView(Protocol):
    """What the text path reads from the engine (a protocol: this module must not import
    :mod:`gemma_chat.generation.engine`, which imports it)."""

    @property
    def backend(self) -> object: ...
    @property
    def sampling(self) -> Sampling: ...
    @property
    def repeat_guard(self) -> RepeatGuard: ...
    @property
    def n_ctx(self) -> int: ...


BYTES_PER_TOKEN = 3
"""The estimate's ratio; Gemma averages about 4 bytes a token on English text."""


def estimate_tokens(text: str) -> int:
    """An estimate of the tokens ``text`` takes: UTF-8 bytes / 3, rounded up."""
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def count_text_tokens(conversation: Conversation, draft: str = "") -> int:
    """The estimated tokens of the conversation (plus a draft), for the context meter."""
    turns = list(conversation.turns)
    if draft.strip() and conversation.pending_user is None:
        turns.append(Turn(Role.USER, draft))
    text = render_text(turns, conversation.system)
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
    turns, system = conversation.turns, conversation.system
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


def stream_text(
    engine: EngineView, conversation: Conversation, seed: int, cancel: threading.Event | None
) -> Iterator[TextDelta | ReplyDone]:
    """The text path of :meth:`Engine.stream` (same events, same contract)."""
    from gemma_chat.generation.events import ReplyDone, ReplyStats, TextDelta

    backend: object = engine.backend
    sampling, repeat_guard = engine.sampling, engine.repeat_guard
    n_ctx = engine.n_ctx
    turns, dropped, prompt_estimate = fit_text(
        conversation, n_ctx, reply_reserve(sampling.max_tokens, n_ctx)
    )
    system = conversation.system
    prompt = render_text(turns, system)
    markers, guard = MarkerFilter(), RepetitionDetector(repeat_guard)
    shown: list[str] = []
    chunks_seen = 0
    usage: dict | None = None
    finish: str | None = None
    stop: StopReason | None = None
    error: str | None = None
    start = time.perf_counter()
    first_at = last_at = None
    chunks = backend.stream_text(  # type: ignore[attr-defined]
        prompt,
        messages=chat_messages(turns, system),
        sampling=sampling,
        seed=seed,
        stop=list(STOP_STRINGS),
        cancel=cancel,
    )
    try:
        for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage
            finish = chunk.finish_reason or finish
            if cancel is not None and cancel.is_set():
                stop = StopReason.CANCELLED
                break
            if not chunk.text:
                continue
            last_at = time.perf_counter()
            first_at = first_at or last_at
            chunks_seen += 1
            text = markers.feed(chunk.text)
            if text:
                shown.append(text)
                yield TextDelta(text)
            if markers.found is not None:
                stop = StopReason.END_OF_TURN
            elif guard.add(hash(chunk.text)):
                stop = StopReason.REPETITION
            elif chunks_seen >= sampling.max_tokens:
                stop = StopReason.MAX_TOKENS
            if stop is not None:
                break
    except RemoteError as failure:
        if cancel is not None and cancel.is_set():
            stop = StopReason.CANCELLED
        elif chunks_seen == 0:
            raise
        else:
            stop, error = StopReason.FAILED, str(failure)
    except Cancelled:
        stop = StopReason.CANCELLED
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if stop is None:
        if cancel is not None and cancel.is_set():
            stop = StopReason.CANCELLED
        elif finish == "length":
            stop = StopReason.MAX_TOKENS
        else:  # "stop": the server matched a stop string or the end of generation
            stop = StopReason.END_OF_TURN
    tail = markers.flush()
    if tail:
        shown.append(tail)
        yield TextDelta(tail)
    text = "".join(shown)
    counts = _usage_counts(usage)
    prompt_tokens, completion_tokens, cached = counts or (prompt_estimate, chunks_seen, 0)
    decode_s = (last_at - first_at) if first_at and last_at else 0.0
    stats = ReplyStats(
        prompt_tokens=prompt_tokens,
        evaluated_tokens=prompt_tokens - cached,
        completion_tokens=completion_tokens,
        ttft_s=(first_at - start) if first_at else None,
        tokens_per_s=(chunks_seen - 1) / decode_s if decode_s > 0 and chunks_seen > 1 else None,
        total_s=time.perf_counter() - start,
        dropped_turns=dropped,
        seed=seed,
        estimated=counts is None,
        api_path=getattr(backend, "api_path", None),
    )
    yield ReplyDone(text, stop, None, stats, sampling, repeat_guard, error)


MAX_USAGE = 2**31 - 1
"""The largest token count believed from a server: no context comes near it, and every
count stays far inside what SQLite, JSON and the stats can hold."""


def _count(value: object) -> int | None:
    """A token count from a server: a non-negative int no larger than :data:`MAX_USAGE`
    (a bool, float, string or absurd number is no count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_USAGE else None


def _usage_counts(usage: dict | None) -> tuple[int, int, int] | None:
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
