"""A small model that drafts for a bigger one (``--draft-model``), in its own context.

It decodes greedily: a draft is a guess, and the target model decides what is kept
(:mod:`gemma_chat.backend.speculative`). Its KV cache follows the token history: each
draft re-uses the longest prefix it already holds, so a rejected draft costs nothing to
undo. Both models must share a vocabulary, or the target would verify ids that mean
something else: :func:`check_same_vocab` refuses a mismatch in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import llama_cpp
import numpy as np

from gemma_chat.backend.base import common_prefix
from gemma_chat.backend.vocab import LlamaVocab
from gemma_chat.errors import ModelError

SAMPLE_STEP = 97
"""Every how many ids the vocabularies are compared piece by piece (plus all of the
first 512, where the control tokens are)."""


def check_same_vocab(main: LlamaVocab, draft: LlamaVocab, draft_name: str) -> None:
    """Refuse a draft model whose vocabulary differs from the main model's.

    Raises:
        ModelError: One line naming the difference.
    """
    if main.size != draft.size:
        raise ModelError(
            f"the draft model {draft_name} has {draft.size} tokens and the model "
            f"{main.size}: a draft model needs the same vocabulary"
        )
    ids = [*range(min(512, main.size)), *range(512, main.size, SAMPLE_STEP)]
    for token in ids:
        if main.token_text(token) != draft.token_text(token):
            raise ModelError(
                f"the draft model {draft_name} spells token {token} differently: a draft "
                "model needs the same vocabulary"
            )


class DraftModel:
    """A GGUF loaded for drafting: greedy, CPU or GPU as asked, its own context."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        threads: int,
        n_gpu_layers: int = 0,
        flash_attn: bool = True,
    ) -> None:
        """Load the model.

        Raises:
            ModelError: llama.cpp could not load it.
        """
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(512, n_ctx),
                n_gpu_layers=n_gpu_layers,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp could not load the draft model {path}") from exc
        self.name = path.name
        self.vocab = LlamaVocab(self._llm._model)

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens the draft model would generate greedily after ``history``."""
        llm = self._llm
        room = llm.n_ctx() - len(history) - 1
        k = min(k, room)
        if k <= 0 or not history:
            return []
        held = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), history)
        held = min(held, len(history) - 1)  # evaluate at least one token: its logits
        llm.n_tokens = held  # eval() drops the cells from here on
        llm.eval(list(history[held:]))
        out: list[int] = []
        while True:
            logits = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            token = int(np.argmax(np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),))))
            out.append(token)
            if len(out) >= k:
                return out
            llm.eval([token])

    def close(self) -> None:
        """Free the model and its context."""
        self._llm.close()
