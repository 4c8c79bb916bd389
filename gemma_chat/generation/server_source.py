"""A reply from llama-server's native API: the Gemma template as ids, each token by id.

:class:`ServerTokenSource` is the local :class:`~gemma_chat.generation.sources.TokenSource`
with the model on a server (``backend.llama_server``, see
:mod:`gemma_chat.backend.llama_server`): the prompt is rendered to ids by gemma-chat's own
template over the server's tokenizer and sent as ids, and each streamed token's id ends
the turn exactly as it does locally (``<end_of_turn>``, ``<eos>``: ``end_of_turn``; a new
``<start_of_turn>``: ``new_turn``). Nothing is biased away, so sampling is untouched. The
counts are the server's own (``tokens_evaluated``, ``timings.prompt_n``), and the reply's
ids are kept for the next prompt so that the server's cache matches it.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import Any

from gemma_chat.chat.context import fit_prompt, reply_reserve
from gemma_chat.chat.conversation import Conversation, StopReason
from gemma_chat.config.settings import Sampling
from gemma_chat.generation.sources import Counts, Piece
from gemma_chat.structured.constraint import OutputConstraint

API_PATH = "completion"
"""What ``--stats`` and ``--json`` name as the path: llama-server's ``/completion``."""
STOP_METHOD = "token_id"
"""How the end of the reply is found: by the id of each token."""


class ServerTokenSource:
    """A llama-server reply by token id (see the module docstring)."""

    exact = True

    def __init__(
        self,
        backend: Any,
        conversation: Conversation,
        sampling: Sampling,
        constraint: OutputConstraint | None = None,
    ) -> None:
        self._backend, self._api = backend, backend.llama_server
        self._template = self._api.template
        n_ctx = backend.info.n_ctx
        reserve = reply_reserve(sampling.max_tokens, n_ctx)
        self._prompt = fit_prompt(self._template, conversation, n_ctx, reserve)
        self._sampling, self._constraint = sampling, constraint
        self.prompt_tokens = len(self._prompt.ids)
        self.dropped_turns = self._prompt.dropped_turns
        self._evaluated: int | None = None
        self._server_prompt: int | None = None
        self._finish: str | None = None
        self._ids_exact = True
        """False once a token's id is unknown (a held-back one not recovered) or a token
        rendered as no text (a stray control token): the text is re-tokenized instead."""

    def pieces(self, seed: int, cancel: threading.Event | None) -> Generator[Piece, None, None]:
        """Each token as a piece, held-back ones included; the ids that end a turn carry
        ``end``."""
        ids = self._template.ids
        chunks = self._backend.stream_tokens(
            list(self._prompt.ids),
            sampling=self._sampling,
            seed=seed,
            cancel=cancel,
            **({} if self._constraint is None else {"constraint": self._constraint}),
        )
        predicted = 0
        try:
            for chunk in chunks:
                self._note(chunk)
                tokens: tuple[int, ...] = getattr(chunk, "tokens", ())
                if not tokens:
                    if chunk.text:  # only a redaction's held text (no token of its own)
                        yield Piece(chunk.text)
                    continue
                reported = getattr(chunk, "predicted", None)
                held = reported - predicted - len(tokens) if reported is not None else 0
                predicted = reported if reported is not None else predicted + len(tokens)
                if held > 0:
                    yield from self._held(chunk.text, tokens[0], held)
                for index, token in enumerate(tokens):
                    text = chunk.text if index == len(tokens) - 1 else ""
                    if token in (ids.end_of_turn, ids.eos):
                        yield Piece("", token, StopReason.END_OF_TURN)
                    elif token == ids.start_of_turn:
                        yield Piece("", token, StopReason.NEW_TURN)
                    else:
                        self._ids_exact = self._ids_exact and bool(text)
                        yield Piece(text, token)
        finally:
            chunks.close()

    def _note(self, chunk: Any) -> None:
        """Keep the server's counts and finish reason (every chunk carries the counts)."""
        self._finish = chunk.finish_reason or self._finish
        evaluated = getattr(chunk, "evaluated", None)
        prompt = getattr(chunk, "prompt_tokens", None)
        if evaluated is not None:
            self._evaluated = evaluated
        if prompt is not None:
            self._server_prompt = prompt

    def _held(self, text: str, last: int, held: int) -> Generator[Piece, None, None]:
        """The tokens the server held back (an incomplete UTF-8 character) before
        ``last``: recovered by tokenizing the completed text; their text arrives with
        ``last``."""
        recovered = self._api.tokenizer.held_ids(text, last, held)
        if recovered is None:
            self._ids_exact = False
        for index in range(held):
            yield Piece("", recovered[index] if recovered else None)

    def end_of_stream(self) -> StopReason:
        """``limit``: the reply reached ``n_predict`` (or the server's context); otherwise
        the server stopped on an end-of-generation token of its own."""
        return StopReason.MAX_TOKENS if self._finish == "limit" else StopReason.END_OF_TURN

    def counts(self, completion: int) -> Counts:
        """The server's counts: the prompt it took, the tokens it evaluated (the rest came
        from its cache)."""
        prompt = self._server_prompt if self._server_prompt is not None else self.prompt_tokens
        evaluated = self._evaluated if self._evaluated is not None else prompt
        return Counts(
            prompt, min(evaluated, prompt), completion, api_path=API_PATH, stop_method=STOP_METHOD
        )

    def history_ids(self, generated: Sequence[Piece], text: str) -> tuple[int, ...] | None:
        """The generated ids, as the local path keeps them (whitespace-only tokens at
        either end dropped), when every id is known and they give the reply's text."""
        if not self._ids_exact or any(p.token is None for p in generated):
            return None
        pairs = [(p.token, p.data if isinstance(p.data, str) else "") for p in generated]
        while pairs and not pairs[-1][1].strip():
            pairs.pop()
        while pairs and pairs[0][1] and not pairs[0][1].strip():
            pairs.pop(0)
        if "".join(piece for _, piece in pairs).strip() != text.strip():
            return None
        return tuple(token for token, _ in pairs if token is not None)
