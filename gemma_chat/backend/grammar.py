"""llama.cpp's grammar sampler for a constrained reply, applied the way llama.cpp's own
server applies it.

A grammar check on the whole vocabulary (262,144 tokens for Gemma 3) costs more than a
decode step of a small model. So each token is first sampled without the grammar, then
checked against it alone. A token the grammar refuses is sampled again under the
grammar, and that too avoids the whole vocabulary when it can: the sampling chain
(greedy, or top-k first) only ever looks at the best allowed tokens, so the grammar is
applied to the :data:`SHORTLIST` best tokens first, and when they hold enough allowed
ones (one for greedy, top-k otherwise) the chain runs on them alone. Only when they do
not (or top-k is off, or a repeat penalty reorders the logits) does the full pass run.
Either way the result is the same token, with the same random draw, as applying the
grammar first, at a fraction of the cost.

The end of the turn: llama.cpp's grammar sampler allows an end-of-generation token
(``<end_of_turn>``, ``<eos>``) exactly when the root rule can be complete, and refuses
it before. So a constrained reply ends only once its JSON is whole, and the loop's stop
rules still see the ``<end_of_turn>``.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaTokenDataArray
from llama_cpp.llama_grammar import json_schema_to_gbnf

from gemma_chat.backend import llama_log
from gemma_chat.errors import UsageError
from gemma_chat.sanitize import one_line
from gemma_chat.structured.constraint import OutputConstraint
from gemma_chat.structured.grammar_depth import check_nesting


def gbnf_for(constraint: OutputConstraint) -> str:
    """The GBNF grammar of a constraint: its own, or its schema's as llama.cpp converts it.

    Raises:
        UsageError: The schema uses something the converter does not support.
    """
    if constraint.grammar is not None:
        check_nesting(constraint.grammar, "--grammar")
        return constraint.grammar
    try:
        grammar = json_schema_to_gbnf(constraint.schema_json or "{}")
    except RecursionError:
        raise UsageError("--schema: the schema is too deep to turn into a grammar") from None
    except Exception as exc:  # the converter raises bare Exceptions and KeyErrors
        raise UsageError(
            f"--schema: llama.cpp cannot turn this schema into a grammar: {one_line(str(exc))}"
        ) from None
    check_nesting(grammar, "--schema")
    return _strict_strings(grammar)


_LAX_CHAR = 'char ::= [^"\\\\]'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


def _strict_strings(grammar: str) -> str:
    """llama-cpp-python's converter lets a raw control character (a line break) into a
    JSON string, which no JSON parser accepts; llama.cpp's own converter excludes
    U+0000-U+001F and DEL, and so does this."""
    return "\n".join(
        _STRICT_CHAR + line[len(_LAX_CHAR) :] if line.startswith(_LAX_CHAR) else line
        for line in grammar.split("\n")
    )


@contextmanager
def _stderr_captured() -> Iterator[dict[str, str]]:
    """Capture what C code writes to file descriptor 2 meanwhile.

    llama.cpp's grammar parser prints its errors, and the whole grammar text, straight
    to stderr: untrusted file text must not reach the terminal, and the reason is wanted
    for the one-line error instead.
    """
    captured: dict[str, str] = {}
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to protect
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured["text"] = sink.read(64 * 1024).decode("utf-8", "replace")


SHORTLIST = 1024
"""How many of the best tokens a refused token's resampling tries before the whole
vocabulary."""


def allowed_needed(sampling: Any) -> int | None:
    """How many allowed tokens among the best ones make the chain's choice exact: 1 for
    greedy, top-k otherwise; None when only the whole vocabulary will do (top-k off, or
    a repeat penalty, which lowers logits and so can reorder them before top-k)."""
    if sampling is None or sampling.repeat_penalty != 1.0:
        return None
    if sampling.temperature == 0.0:
        return 1
    top_k = int(sampling.top_k)
    return top_k if 0 < top_k <= SHORTLIST // 2 else None


class GrammarSampler:
    """One reply's grammar state over a model's vocabulary."""

    def __init__(self, model: Any, gbnf: str, sampling: Any = None) -> None:
        """Parse ``gbnf`` for the model's vocabulary (``sampling``: the reply's
        :class:`~gemma_chat.config.settings.Sampling`, which says when the shortlist
        is exact; without it every resampling takes the full pass).

        Raises:
            UsageError: The grammar does not parse (llama.cpp's reason is quoted).
        """
        llama_log.clear()
        with _stderr_captured() as captured:
            pointer = llama_cpp.llama_sampler_init_grammar(
                model.vocab, gbnf.encode("utf-8"), b"root"
            )
        if not pointer:
            found = re.search(r"error parsing grammar: (.*)", captured.get("text", ""))
            reason = found.group(1) if found else llama_log.last_error()
            reason = one_line(reason or "it does not parse")
            raise UsageError(f"the grammar cannot be used: {reason}")
        self._sampler = pointer
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(model.vocab))
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=self._one, size=1, selected=-1, sorted=False
        )
        self._all: LlamaTokenDataArray | None = None
        self._needed = allowed_needed(sampling)
        self._short = _TokenArray(min(SHORTLIST, self._n_vocab))
        self.resampled = 0
        """Tokens the grammar refused, each sampled again under it."""
        self.full_passes = 0
        """Of those, how many needed the whole vocabulary (the shortlist fell short)."""

    def sample(self, chain: Any, ctx: Any, idx: int) -> int:
        """Sample the next token with ``chain`` (llama-cpp-python's ``LlamaSampler``),
        within the grammar, and advance the grammar past it."""
        token = int(llama_cpp.llama_sampler_sample(chain.sampler, ctx, idx))
        if not self._allows(token):
            self.resampled += 1
            token = self._resample(chain, ctx, idx)
        llama_cpp.llama_sampler_accept(self._sampler, token)
        return token

    def _allows(self, token: int) -> bool:
        one = self._one[0]
        one.id, one.logit, one.p = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._one_array))
        return not math.isinf(self._one[0].logit)

    def _resample(self, chain: Any, ctx: Any, idx: int) -> int:
        """Sample under the grammar: from the shortlist when that is exact, else from
        the whole vocabulary."""
        pointer = llama_cpp.llama_get_logits_ith(ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        if self._needed is not None and self._n_vocab > self._short.size:
            token = self._from_shortlist(chain, logits, self._needed)
            if token is not None:
                return token
        self.full_passes += 1
        return self._full_pass(chain, logits)

    def _from_shortlist(self, chain: Any, logits: np.ndarray, needed: int) -> int | None:
        """The chain's token among the best :data:`SHORTLIST` tokens the grammar allows,
        or None when fewer than ``needed`` are allowed (the best allowed ones may then
        lie outside)."""
        short = self._short
        best = np.argpartition(logits, -short.size)[-short.size :]
        short.load(best, logits[best])
        llama_cpp.llama_sampler_apply(self._sampler, short.pointer)
        if int(np.isfinite(short.data.logit).sum()) < needed:
            return None
        llama_cpp.llama_sampler_apply(chain.sampler, short.pointer)
        token = int(short.data.id[short.array.selected])
        llama_cpp.llama_sampler_accept(chain.sampler, token)
        return token

    def _full_pass(self, chain: Any, logits: np.ndarray) -> int:
        """Every token's logit, the grammar, then the sampling chain."""
        if self._all is None:
            self._all = LlamaTokenDataArray(n_vocab=self._n_vocab)
        array = self._all
        array.copy_logits(logits)
        array.candidates.selected = -1
        candidates = ctypes.byref(array.candidates)
        llama_cpp.llama_sampler_apply(self._sampler, candidates)
        llama_cpp.llama_sampler_apply(chain.sampler, candidates)
        token = int(array.candidates_data.id[array.candidates.selected])
        llama_cpp.llama_sampler_accept(chain.sampler, token)
        return token

    def close(self) -> None:
        """Free the grammar."""
        if self._sampler is not None:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None


class _TokenArray:
    """A reusable ``llama_token_data_array`` of up to ``size`` candidates."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = np.recarray(
            (size,),
            dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True),
        )
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=size,
            selected=-1,
            sorted=False,
        )
        self.pointer = ctypes.byref(self.array)

    def load(self, ids: np.ndarray, logits: np.ndarray) -> None:
        """Fill it with these candidates (a sampler may have shrunk or sorted it)."""
        self.data.id[:] = ids
        self.data.logit[:] = logits
        self.data.p[:] = 0.0
        self.array.size, self.array.selected, self.array.sorted = self.size, -1, False
