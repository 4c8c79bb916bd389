"""llama-cpp-python's ``Llama``, counting what it evaluates and stoppable between batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import llama_cpp

from gemma_chat.backend.base import Cancelled
from gemma_chat.backend.grammar import GrammarSampler


class CountingLlama(llama_cpp.Llama):
    """``Llama`` that counts evaluated tokens and can be cancelled between batches.

    ``Llama.generate`` calls ``self.eval`` once for the un-cached part of the prompt and
    then once per sampled token, so counting here measures the KV-cache reuse exactly.
    """

    evaluated = 0
    cancel: threading.Event | None = None
    grammar: GrammarSampler | None = None

    def eval(self, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        for start in range(0, len(tokens), self.n_batch):
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled
            chunk = tokens[start : start + self.n_batch]
            super().eval(chunk)
            self.evaluated += len(chunk)

    def sample(self, *args: Any, idx: int | None = None, **kwargs: Any) -> int:
        # A constrained reply samples through its grammar (see backend/grammar.py);
        # ``generate`` has built the sampling chain, without the grammar, in _sampler.
        if self.grammar is None or self._sampler is None:
            return super().sample(*args, idx=idx, **kwargs)
        ridx = idx - self.n_tokens if idx is not None else -1
        return self.grammar.sample(self._sampler, self._ctx.ctx, ridx)
