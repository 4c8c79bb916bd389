"""What a reply stream yields: text deltas, then one ReplyDone with its stats."""

from __future__ import annotations

from dataclasses import dataclass

from gemma_chat.chat.conversation import StopReason
from gemma_chat.config.settings import RepeatGuard, Sampling


@dataclass(frozen=True)
class TextDelta:
    """New reply text, safe to show."""

    text: str


@dataclass(frozen=True)
class ReplyStats:
    """Measurements of one reply.

    Attributes:
        prompt_tokens: Tokens in the rendered prompt.
        evaluated_tokens: Prompt tokens actually evaluated (the rest came from the KV cache).
        completion_tokens: Tokens in the reply (the stop token excluded).
        ttft_s: Seconds from the request to the first sampled token.
        tokens_per_s: Decode speed after the first token.
        total_s: Seconds for the whole reply.
        dropped_turns: Oldest turns left out to fit the context.
        seed: The sampling seed used.
        estimated: The token counts are estimates (a server that sent no ``usage``).
        api_path: For a remote server, the endpoint used: ``completions`` or ``chat``
            (OpenAI), ``completion`` (llama-server's native API).
        stop_method: For a remote server, how the reply's end was found: ``token_id``
            (the server reports each token's id) or ``stop_string`` (text only).
        speculative: How the reply was decoded: ``lookup`` or ``draft`` (speculative
            decoding), None when plainly.
        drafted_tokens: Tokens drafted and verified (speculative decoding).
        accepted_tokens: Drafted tokens the model agreed with and kept.
    """

    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int
    ttft_s: float | None
    tokens_per_s: float | None
    total_s: float
    dropped_turns: int
    seed: int
    estimated: bool = False
    api_path: str | None = None
    stop_method: str | None = None
    speculative: str | None = None
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def acceptance(self) -> float | None:
        """accepted / drafted tokens; None when nothing was drafted."""
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else None


@dataclass(frozen=True)
class ReplyDone:
    """The finished reply.

    Attributes:
        text: Exactly the text that was streamed.
        stop_reason: Why it ended.
        token_ids: The generated ids to re-send for this reply in the next prompt, for
            exact KV reuse; None when they do not match the text.
        stats: Measurements.
        sampling: The sampling parameters the reply was generated with (the seed used
            is ``stats.seed``).
        repeat_guard: The repetition-guard settings it was generated with.
        error: Why the reply failed (``stop_reason`` is ``failed``); the text is partial.
    """

    text: str
    stop_reason: StopReason
    token_ids: tuple[int, ...] | None
    stats: ReplyStats
    sampling: Sampling | None = None
    repeat_guard: RepeatGuard | None = None
    error: str | None = None
