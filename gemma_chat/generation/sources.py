"""Where a reply's pieces come from: a token backend or a text backend, as one stream.

A source fits the conversation into the context, starts the backend and turns what it
yields into :class:`Piece` objects; it knows the prompt's facts (its size, the turns
dropped) and how to count the reply. It applies no stop rule of its own beyond naming the
control tokens that end a turn: the rules live in :mod:`gemma_chat.generation.loop`.

* :class:`TokenSource`: the Gemma template as ids (:mod:`gemma_chat.chat.template`); each
  sampled id is a piece of bytes (a character may be split across pieces).
* :class:`TextSource`: the template as text (:mod:`gemma_chat.chat.template_text`), sent
  with the turn markers as stop strings; each streamed chunk is a piece of text, and the
  counts are estimates unless the server reports its ``usage``.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gemma_chat.backend.base import Backend, TextBackend, TokenBackend
from gemma_chat.chat.context import fit_prompt, reply_reserve
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.chat.template import GemmaTemplate
from gemma_chat.chat.template_text import STOP_STRINGS, chat_messages, render_text
from gemma_chat.config.settings import Sampling
from gemma_chat.generation.text_counts import fit_text, usage_counts
from gemma_chat.structured.constraint import OutputConstraint


@dataclass(frozen=True, slots=True)
class Piece:
    """One unit of a reply: a sampled token, or a chunk a server streamed.

    Attributes:
        data: The token's bytes (UTF-8 may be split across tokens) or the chunk's text.
        token: The token id; None for a server's chunk.
        end: The backend ended the turn with this unit (a control token); it is not
            part of the reply.
    """

    data: bytes | str
    token: int | None = None
    end: StopReason | None = None

    @property
    def key(self) -> int:
        """What the repetition guard compares: the token id, or the chunk's hash (servers
        stream one token per chunk, so a looping reply repeats chunks)."""
        return self.token if self.token is not None else hash(self.data)


@dataclass(frozen=True)
class Counts:
    """A reply's token counts, for its stats."""

    prompt_tokens: int
    evaluated_tokens: int
    completion_tokens: int
    estimated: bool = False
    api_path: str | None = None
    stop_method: str | None = None


class PieceSource(Protocol):
    """A backend's reply as pieces, with the facts of the prompt that was sent.

    Attributes:
        prompt_tokens: Tokens in the prompt (an estimate when not :attr:`exact`).
        dropped_turns: Oldest turns left out to fit the context.
        exact: The counts are exact, so the loop itself stops at a full context (with
            estimates it leaves that to the server, which knows its context).
    """

    prompt_tokens: int
    dropped_turns: int
    exact: bool

    def pieces(self, seed: int, cancel: threading.Event | None) -> Generator[Piece, None, None]:
        """Start the backend and yield the reply's pieces until the caller stops.

        Raises:
            Cancelled: ``cancel`` was set while the prompt was being evaluated.
            RemoteError: A server failed (before or during the stream).
        """
        ...

    def end_of_stream(self) -> StopReason:
        """Why the reply ended when the backend stopped streaming by itself."""
        ...

    def counts(self, completion: int) -> Counts:
        """The reply's token counts, given the pieces it kept."""
        ...

    def history_ids(self, generated: Sequence[Piece], text: str) -> tuple[int, ...] | None:
        """The ids to re-send for this reply in the next prompt, or None."""
        ...


def source_for(
    backend: Backend,
    conversation: Conversation,
    sampling: Sampling,
    template: GemmaTemplate | None = None,
    constraint: OutputConstraint | None = None,
) -> PieceSource:
    """The source for ``backend``'s kind (``backend.is_remote``), with the conversation
    fitted into its context; ``constraint`` goes to the backend with the request.

    Raises:
        ContextError: The newest message cannot fit into the context.
    """
    if backend.is_remote:
        return TextSource(backend, conversation, sampling, constraint)
    return TokenSource(
        backend, template or GemmaTemplate(backend.tokenizer), conversation, sampling, constraint
    )


def _close(iterator: Iterator[object]) -> None:
    """Close a backend's generator: that ends its generation (and frees its lock) now."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class TokenSource:
    """A token backend's reply: the Gemma template as ids; ``<end_of_turn>``, ``<eos>`` or
    another end-of-generation id ends the turn, a new ``<start_of_turn>`` is ``new_turn``."""

    exact = True

    def __init__(
        self,
        backend: TokenBackend,
        template: GemmaTemplate,
        conversation: Conversation,
        sampling: Sampling,
        constraint: OutputConstraint | None = None,
    ) -> None:
        n_ctx = backend.info.n_ctx
        reserve = reply_reserve(sampling.max_tokens, n_ctx)
        self._prompt = fit_prompt(template, conversation, n_ctx, reserve)
        self._backend, self._template, self._sampling = backend, template, sampling
        self._constraint = constraint
        self.prompt_tokens = len(self._prompt.ids)
        self.dropped_turns = self._prompt.dropped_turns

    def pieces(self, seed: int, cancel: threading.Event | None) -> Generator[Piece, None, None]:
        """Each sampled id as a piece; the ids that end a turn carry ``end``."""
        tokenizer = self._backend.tokenizer
        ids = self._template.ids
        end_ids = {ids.end_of_turn, ids.eos}
        if self._constraint is None:
            tokens = self._backend.generate(self._prompt.ids, self._sampling, seed, cancel)
        else:
            tokens = self._backend.generate(
                self._prompt.ids, self._sampling, seed, cancel, constraint=self._constraint
            )
        try:
            for token in tokens:
                if token in end_ids or tokenizer.is_end_of_generation(token):
                    yield Piece(b"", token, StopReason.END_OF_TURN)
                elif token == ids.start_of_turn:
                    yield Piece(b"", token, StopReason.NEW_TURN)
                else:
                    yield Piece(tokenizer.piece(token), token)
        finally:
            _close(tokens)

    def end_of_stream(self) -> StopReason:
        """A token backend samples until stopped: ending by itself means the context ran
        out."""
        return StopReason.CONTEXT_FULL

    def counts(self, completion: int) -> Counts:
        """Exact counts; the evaluated prompt tokens as the backend measured them."""
        evaluated = self._backend.last_prompt_evaluated
        return Counts(self.prompt_tokens, evaluated, completion)

    def history_ids(self, generated: Sequence[Piece], text: str) -> tuple[int, ...] | None:
        """The generated ids, when they decode to the reply's text.

        Whitespace-only tokens at either end are dropped (the template trims model
        text). A leading space inside the first token (SentencePiece's "▁Once") is kept:
        re-sending exactly what the model generated keeps the KV cache valid, where
        re-tokenizing the trimmed text would force the whole reply to be evaluated again.
        """
        tokenizer = self._backend.tokenizer
        ids = [p.token for p in generated if p.token is not None]
        if any(tokenizer.is_control(token) for token in ids):
            # A stray control token (<pad>, <bos>...) is hidden from the text; re-sending
            # it would put it into the prompt, so the text is re-tokenized instead.
            return None
        piece = tokenizer.piece
        while ids and not piece(ids[-1]).strip():
            ids.pop()
        while ids and not piece(ids[0]).strip():
            ids.pop(0)
        decoded = b"".join(piece(t) for t in ids).decode("utf-8", errors="replace")
        return tuple(ids) if decoded.strip() == text.strip() else None


class TextSource:
    """A text backend's reply: the Gemma template as text with the turn markers as stop
    strings; each streamed chunk with text is a piece. The server's ``usage`` and finish
    reason are kept for the counts and :meth:`end_of_stream`."""

    exact = False

    def __init__(
        self,
        backend: TextBackend,
        conversation: Conversation,
        sampling: Sampling,
        constraint: OutputConstraint | None = None,
    ):
        n_ctx = backend.info.n_ctx
        reserve = reply_reserve(sampling.max_tokens, n_ctx)
        turns, self.dropped_turns, self.prompt_tokens = fit_text(conversation, n_ctx, reserve)
        system = conversation.prompt_view()[1]  # with a summary of compacted turns
        self._prompt = render_text(turns, system)
        self._messages = chat_messages(turns, system)
        self._backend, self._sampling, self._constraint = backend, sampling, constraint
        self._usage: dict[str, object] | None = None
        self._finish: str | None = None

    def pieces(self, seed: int, cancel: threading.Event | None) -> Generator[Piece, None, None]:
        """Each chunk with text as a piece (a chunk with only ``usage`` or a finish reason
        is no piece)."""
        chunks = self._backend.stream_text(
            self._prompt,
            messages=self._messages,
            sampling=self._sampling,
            seed=seed,
            stop=list(STOP_STRINGS),
            cancel=cancel,
            **({} if self._constraint is None else {"constraint": self._constraint}),
        )
        try:
            for chunk in chunks:
                if chunk.usage:
                    self._usage = chunk.usage
                self._finish = chunk.finish_reason or self._finish
                if chunk.text:
                    yield Piece(chunk.text)
        finally:
            _close(chunks)

    def end_of_stream(self) -> StopReason:
        """``length``: the server's max_tokens; otherwise it matched a stop string or the
        end of generation."""
        return StopReason.MAX_TOKENS if self._finish == "length" else StopReason.END_OF_TURN

    def counts(self, completion: int) -> Counts:
        """The server's ``usage`` when complete and plausible, else the estimates (the
        prompt's, and one token per chunk)."""
        api_path = self._backend.api_path
        method = getattr(self._backend, "stop_method", None)
        reported = usage_counts(self._usage)
        if reported is None:
            prompt = self.prompt_tokens
            return Counts(
                prompt, prompt, completion, estimated=True, api_path=api_path, stop_method=method
            )
        prompt, completion, cached = reported
        return Counts(prompt, prompt - cached, completion, api_path=api_path, stop_method=method)

    def history_ids(self, generated: Sequence[Piece], text: str) -> tuple[int, ...] | None:
        """None: there are no ids without a tokenizer."""
        return None
