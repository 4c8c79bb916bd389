"""The turn engine: one model reply, streamed, with Gemma's stop rules.

The engine renders the conversation with the Gemma template, fits it into the context,
hands the token ids to a backend, and turns the sampled ids into text. It decides when
the reply ends; nothing after the stop point is ever yielded or stored:

* ``<end_of_turn>``, ``<eos>`` or another end-of-generation id: ``end_of_turn``;
* a new ``<start_of_turn>`` id: ``new_turn``;
* either marker spelled out as plain text: ``end_of_turn`` (the marker is never shown);
* the max-tokens limit: ``max_tokens``; a full context: ``context_full``;
* the repetition guard: ``repetition``; the cancel event: ``cancelled``.

A backend with ``stream_text`` (a remote server, :mod:`gemma_chat.backend.remote`) takes
the *text* path instead, in :mod:`gemma_chat.generation.engine_text`: the same template rendered as
text, the same stop reasons, plus ``failed`` when the connection breaks mid-reply.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gemma_chat.backend.base import Backend, Cancelled
from gemma_chat.chat.context import fit_prompt, reply_reserve
from gemma_chat.chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.config.settings import RepeatGuard, Sampling
from gemma_chat.generation.events import ReplyDone, ReplyStats, TextDelta
from gemma_chat.generation.repetition import RepetitionDetector
from gemma_chat.generation.textstream import MarkerFilter, Utf8Stream


@dataclass
class Engine:
    """Generates Gemma replies on a backend.

    Attributes:
        backend: The loaded model.
        sampling: Sampling parameters (read at the start of every reply).
        repeat_guard: Repetition-guard settings.
    """

    backend: Backend
    sampling: Sampling = field(default_factory=Sampling)
    repeat_guard: RepeatGuard = field(default_factory=RepeatGuard)

    def __post_init__(self) -> None:
        self.text_mode = hasattr(self.backend, "stream_text")
        """The backend takes text prompts (a remote server): no tokenizer, no template."""
        self.template = None if self.text_mode else GemmaTemplate(self.backend.tokenizer)
        self.last_seed: int | None = None
        """The seed of the reply being (or last) generated."""

    @property
    def n_ctx(self) -> int:
        """The context window of the loaded model."""
        return self.backend.info.n_ctx

    def stream(
        self, conversation: Conversation, cancel: threading.Event | None = None
    ) -> Iterator[TextDelta | ReplyDone]:
        """Generate the reply to the conversation's pending user turn.

        Yields :class:`TextDelta` events, then exactly one :class:`ReplyDone`. The
        conversation is not changed; see :meth:`reply`.

        Raises:
            ContextError: The newest message cannot fit into the context.
            RemoteError: A remote server failed before sending any text.
        """
        if self.text_mode:
            from gemma_chat.generation.engine_text import stream_text

            yield from stream_text(self, conversation, self._seed(), cancel)
            return
        sampling, repeat_guard = self.sampling, self.repeat_guard
        n_ctx = self.n_ctx
        fitted = fit_prompt(
            self.template, conversation, n_ctx, reply_reserve(sampling.max_tokens, n_ctx)
        )
        seed = self._seed()
        tokenizer = self.backend.tokenizer
        ids = self.template.ids
        end_ids = {ids.end_of_turn, ids.eos}
        utf8, markers = Utf8Stream(), MarkerFilter()
        guard = RepetitionDetector(repeat_guard)
        generated: list[int] = []
        sampled = 0
        shown: list[str] = []
        stop: StopReason | None = None
        start = time.perf_counter()
        first_at = last_at = None
        tokens = self.backend.generate(fitted.ids, sampling, seed, cancel)
        try:
            for token in tokens:
                last_at = time.perf_counter()
                first_at = first_at or last_at
                sampled += 1
                if cancel is not None and cancel.is_set():
                    stop = StopReason.CANCELLED
                    break
                if token in end_ids or tokenizer.is_end_of_generation(token):
                    stop = StopReason.END_OF_TURN
                    break
                if token == ids.start_of_turn:
                    stop = StopReason.NEW_TURN
                    break
                generated.append(token)
                text = markers.feed(utf8.feed(tokenizer.piece(token)))
                if text:
                    shown.append(text)
                    yield TextDelta(text)
                stop = self._limit_reached(
                    markers, guard, token, generated, sampling.max_tokens, len(fitted.ids), n_ctx
                )
                if stop is not None:
                    break
        except Cancelled:
            stop = StopReason.CANCELLED
        finally:
            close = getattr(tokens, "close", None)
            if close is not None:
                close()
        if stop is None:  # the backend ended the stream by itself
            stop = StopReason.CONTEXT_FULL
        if markers.found is None:
            tail = markers.feed(utf8.finish()) + markers.flush()
            if tail:
                shown.append(tail)
                yield TextDelta(tail)
        text = "".join(shown)
        decode_s = (last_at - first_at) if first_at and last_at else 0.0
        stats = ReplyStats(
            prompt_tokens=len(fitted.ids),
            evaluated_tokens=self.backend.last_prompt_evaluated,
            completion_tokens=len(generated),
            ttft_s=(first_at - start) if first_at else None,
            tokens_per_s=(sampled - 1) / decode_s if decode_s > 0 and sampled > 1 else None,
            total_s=time.perf_counter() - start,
            dropped_turns=fitted.dropped_turns,
            seed=seed,
        )
        history_ids = None if markers.found else self._history_ids(generated, text)
        yield ReplyDone(text, stop, history_ids, stats, sampling, repeat_guard)

    def reply(
        self,
        conversation: Conversation,
        on_text: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> ReplyDone:
        """Generate the reply, pass each delta to ``on_text``, and append it to the
        conversation."""
        done: ReplyDone | None = None
        for event in self.stream(conversation, cancel):
            if isinstance(event, TextDelta):
                if on_text is not None:
                    on_text(event.text)
            else:
                done = event
        assert done is not None
        conversation.add_model(done.text, done.stop_reason, done.token_ids)
        return done

    def count_tokens(self, conversation: Conversation, draft: str = "") -> int:
        """Exact tokens the conversation (plus a draft message) takes in the context.

        Counts what the next prompt would hold before any turns are dropped: BOS, every
        turn, and the generation prompt when a user message is pending. This is the
        context meter's number. For a text backend it is an estimate (see
        :func:`gemma_chat.generation.engine_text.estimate_tokens`).
        """
        if self.text_mode:
            from gemma_chat.generation.engine_text import count_text_tokens

            return count_text_tokens(conversation, draft)
        turns = list(conversation.turns)
        if draft.strip() and conversation.pending_user is None:
            turns.append(Turn(Role.USER, draft))
        count = len(self.template.render(turns, conversation.system))
        if not turns or turns[-1].role is not Role.USER:
            count -= len(self.template.generation_prompt())  # no reply is pending
        return count

    def _seed(self) -> int:
        seed = self.sampling.seed
        self.last_seed = seed if seed is not None else random.randrange(2**31)
        return self.last_seed

    def _limit_reached(
        self,
        markers: MarkerFilter,
        guard: RepetitionDetector,
        token: int,
        generated: list[int],
        max_tokens: int,
        prompt_tokens: int,
        n_ctx: int,
    ) -> StopReason | None:
        # max_tokens is the reply's own: a /set while it streams applies to the next one,
        # as the recorded sampling says.
        if markers.found is not None:
            return StopReason.END_OF_TURN
        if guard.add(token):
            return StopReason.REPETITION
        if len(generated) >= max_tokens:
            return StopReason.MAX_TOKENS
        if prompt_tokens + len(generated) >= n_ctx:
            return StopReason.CONTEXT_FULL
        return None

    def _history_ids(self, generated: list[int], text: str) -> tuple[int, ...] | None:
        """The ids to re-send for this reply in the next prompt, or None.

        Whitespace-only tokens at either end are dropped (the template trims model
        text). A leading space inside the first token (SentencePiece's "▁Once") is kept:
        re-sending exactly what the model generated keeps the KV cache valid, where
        re-tokenizing the trimmed text would force the whole reply to be evaluated again.
        """
        tokenizer = self.backend.tokenizer
        if any(tokenizer.is_control(token) for token in generated):
            # A stray control token (<pad>, <bos>...) is hidden from the text; re-sending
            # it would put it into the prompt, so the text is re-tokenized instead.
            return None
        piece = tokenizer.piece
        ids = list(generated)
        while ids and not piece(ids[-1]).strip():
            ids.pop()
        while ids and not piece(ids[0]).strip():
            ids.pop(0)
        decoded = b"".join(piece(t) for t in ids).decode("utf-8", errors="replace")
        return tuple(ids) if decoded.strip() == text.strip() else None
