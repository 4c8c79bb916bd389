"""The local backend: llama-cpp-python on a GGUF file.

llama.cpp is imported here only, so ``import gemma_chat`` stays cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import llama_cpp

from gemma_chat.backend import kv_state, llama_log
from gemma_chat.backend.base import BackendInfo, StateError, common_prefix
from gemma_chat.backend.counting_llama import CountingLlama
from gemma_chat.backend.grammar import GrammarSampler, gbnf_for
from gemma_chat.backend.offload import OffloadPlan
from gemma_chat.backend.speculative import PromptLookup, SpecStats, speculate
from gemma_chat.backend.vocab import LlamaVocab
from gemma_chat.config.settings import Sampling, threads_from_env
from gemma_chat.errors import ModelError, UsageError
from gemma_chat.structured.constraint import OutputConstraint

N_BATCH = 512


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def default_threads() -> int:
    """``$GEMMA_CHAT_THREADS``, else every core this process may run on."""
    try:
        from_env = threads_from_env()
    except UsageError:  # refused where settings are built; doctor still reports the rest
        from_env = None
    if from_env is not None:
        return from_env
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def load_vocab(path: Path, debug: bool = False, keep_stderr: bool = False) -> LlamaVocab:
    """Load only a model's vocabulary (fast; no weights, no context).

    Args:
        path: The GGUF file.
        debug: Print llama.cpp's log.
        keep_stderr: Leave stderr open during the load. llama-cpp-python points it at
            /dev/null otherwise, which would hide the message of a native abort.
    """
    from llama_cpp._internals import LlamaModel

    llama_log.install(debug)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    llama_log.clear()
    try:
        model = LlamaModel(path_model=str(path), params=params, verbose=debug or keep_stderr)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(_load_failure(path)) from exc
    return LlamaVocab(model)


class LlamaBackend:
    """A GGUF model loaded into llama.cpp, ready to generate."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        offload: OffloadPlan,
        threads: int | None = None,
        architecture: str = "",
        context_length: int | None = None,
        flash_attn: bool = True,
        debug: bool = False,
        keep_stderr: bool = False,
    ) -> None:
        """Load the model. Validate and probe the file first (see ``gemma_chat.models.resolve``).

        ``keep_stderr`` leaves stderr open during the load (see :func:`load_vocab`).

        Raises:
            ModelError: llama.cpp could not load the file or create the context.
        """
        llama_log.install(debug)
        llama_log.clear()
        threads = threads or default_threads()
        try:
            self._llm = CountingLlama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(N_BATCH, n_ctx),
                n_gpu_layers=offload.n_gpu_layers,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=flash_attn,
                # Sliding-window layers keep every cell, so the cache can be cut back
                # anywhere (branches, speculation, a saved state); llama.cpp's default
                # keeps only the window. Asked for, not left to llama-cpp-python's default.
                swa_full=True,
                verbose=debug or keep_stderr,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(_load_failure(path)) from exc
        self.tokenizer = LlamaVocab(self._llm._model)
        gpu_layers = 0
        if offload.device == "gpu":
            gpu_layers = llama_log.offloaded_layers() or 0
        self.info = BackendInfo(
            model=path.name,
            path=str(path),
            architecture=architecture,
            context_length=context_length,
            n_ctx=int(self._llm.n_ctx()),
            device="gpu" if gpu_layers > 0 else "cpu",
            gpu_layers=gpu_layers,
            threads=threads,
        )
        self._flash_attn = flash_attn
        self._last_prompt_evaluated = 0
        self._lock = threading.Lock()
        self.speculative = "off"
        """How replies are decoded: ``off`` (plainly), ``lookup`` (prompt-lookup drafts
        verified in batches; see :mod:`gemma_chat.backend.speculative`) or ``draft``
        (drafts from :attr:`draft_model`)."""
        self.draft_model: Any = None
        """The :class:`~gemma_chat.backend.draft_model.DraftModel` for ``draft``."""
        self.last_speculation = SpecStats()
        """What speculation did during the last (or current) generation."""

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and diagnostics)."""
        return self._llm

    @property
    def is_remote(self) -> Literal[False]:
        """False: the model runs in this process (a token backend)."""
        return False

    @property
    def last_prompt_evaluated(self) -> int:
        """Prompt tokens the last generation evaluated; the rest came from the KV cache."""
        return self._last_prompt_evaluated

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        seed: int,
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[int]:
        """Yield sampled token ids until the caller stops iterating.

        ``Llama.generate`` re-uses the longest common prefix of the previous prompt and
        this one, so re-sending the same history evaluates only the new tokens. With a
        ``constraint``, every token is sampled within its grammar, and the end of the
        turn becomes possible once the grammar is complete.

        Raises:
            UsageError: The constraint's grammar does not parse, or its schema cannot be
                turned into one.
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a generation is already running on this model")
        llm = self._llm
        try:
            if constraint is not None:
                llm.grammar = GrammarSampler(llm._model, gbnf_for(constraint), sampling)
            llm.set_seed(seed)
            llm.cancel = cancel
            before = llm.evaluated
            self._last_prompt_evaluated = 0
            tokens = llm.generate(
                list(prompt),
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
            )
            stats = self.last_speculation = SpecStats()
            drafter = self._drafter() if constraint is None else None
            if drafter is not None:
                stats.mode = self.speculative
                tokens = speculate(
                    llm, tokens, drafter, stats, cancel, max_tokens=sampling.max_tokens
                )
            first = True
            try:
                for token in tokens:
                    if first:
                        self._last_prompt_evaluated = llm.evaluated - before
                        first = False
                    yield int(token)
            finally:
                tokens.close()  # speculation cuts its cache back to what was yielded
        finally:
            llm.cancel = None
            if llm.grammar is not None:
                llm.grammar.close()
                llm.grammar = None
            self._lock.release()

    def _drafter(self) -> Any:
        """What drafts for this reply (None: plain decoding)."""
        if self.speculative == "lookup":
            return PromptLookup()
        if self.speculative == "draft" and self.draft_model is not None:
            return self.draft_model
        return None

    # The KV state capability (see ``base.StatefulBackend``). Each method takes the
    # generation lock: a state saved or loaded mid-generation would be inconsistent.

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The token ids the KV cache holds now (what ``generate`` matches prefixes with)."""
        llm = self._llm
        return tuple(llm.input_ids[: llm.n_tokens].tolist())

    @property
    def state_signature(self) -> dict[str, object]:
        """What a saved state must match besides the model: the runtime's version and
        the KV cache layout (flash attention stores V untransposed)."""
        params = self._llm.context_params
        return {
            "llama_cpp_python": llama_cpp.__version__,
            "flash_attn": self._flash_attn,
            "type_k": int(params.type_k),
            "type_v": int(params.type_v),
            "swa_full": bool(params.swa_full),
        }

    def state_size(self) -> int:
        """Bytes :meth:`save_state` would write now."""
        with self._exclusive():
            return kv_state.state_size(self._llm._ctx.ctx, self._llm.n_tokens)

    def save_state(self, path: Path, prompt_ids: Sequence[int] | None = None) -> int:
        """Write the KV cache and its token ids to ``path``; return the tokens saved.

        With ``prompt_ids``, only the prefix the cache shares with them is kept and
        saved: tokens the next prompt will not repeat (a reply's trailing whitespace)
        would make the state unusable (see :meth:`restore_state`). Nothing is written
        when there is nothing to save (returns 0).

        Raises:
            RuntimeError: A generation is running.
            StateError: llama.cpp could not produce the state.
            OSError: The file could not be written.
        """
        with self._exclusive():
            llm = self._llm
            n_tokens = llm.n_tokens
            if prompt_ids is not None:
                n_tokens = common_prefix(self.cached_tokens, prompt_ids)
            if n_tokens == 0:
                return 0
            # Also drops cells past n_tokens that a reset() without eval() left behind.
            llm._ctx.kv_cache_seq_rm(kv_state.SEQ_ID, n_tokens, -1)
            if n_tokens < llm.n_tokens:
                llm.n_tokens = n_tokens
                llm._requires_eval = True  # the logits belong to a dropped token
            kv_state.write_state(llm._ctx.ctx, path, llm.input_ids[:n_tokens].tolist())
            return n_tokens

    def state_tokens(self, path: Path) -> list[int]:
        """The token ids a saved state holds, without loading it.

        Raises:
            StateError: Not a state file, or truncated.
            OSError: The file cannot be read.
        """
        return kv_state.read_tokens(path)

    def restore_state(self, path: Path, prompt_ids: Sequence[int], min_tokens: int = 1) -> int:
        """Load a saved state, keeping only its prefix shared with ``prompt_ids``.

        Returns the tokens restored: the next ``generate`` on a prompt starting with
        ``prompt_ids`` evaluates only what follows them. Returns 0, with the cache
        untouched, when fewer than ``min_tokens`` tokens are shared, or when the state is
        longer than the model's sliding window (Gemma 2 and 3: llama.cpp saves only the
        last window of those layers) and not all of it is shared. When the cache already
        holds the shared prefix, nothing is loaded and its length is returned.
        After an error the KV cache is empty or untouched, never half-loaded.

        Raises:
            RuntimeError: A generation is running.
            StateError: The file cannot be used (damaged, another model, too long).
            OSError: The file cannot be read.
        """
        with self._exclusive():
            llm = self._llm
            saved = kv_state.read_tokens(path)
            if len(saved) > llm.n_ctx():
                raise StateError(
                    f"the state holds {len(saved)} tokens; the context has {llm.n_ctx()}"
                )
            shared = common_prefix(saved, prompt_ids)
            if shared < max(1, min_tokens):
                return 0
            n_swa = self._n_swa()
            if 0 < n_swa < len(saved) and shared < len(saved):
                # llama.cpp saves only the last window of a sliding-window layer, so such
                # a state can continue from its end only, not from an earlier position.
                return 0
            held = common_prefix(self.cached_tokens, prompt_ids)
            if held >= shared:
                return held  # the cache already holds as much: loading would gain nothing
            self._clear()
            try:
                if kv_state.load_state(llm._ctx.ctx, path) != saved:
                    raise StateError("the state file changed while it was read")
                self._keep_prefix(shared)
            except BaseException:
                self._clear()  # never leave a half-loaded cache behind
                raise
            llm.input_ids[:shared] = saved[:shared]
            llm.n_tokens = shared
            # The logits are not restored: make generate() evaluate at least one token.
            llm._requires_eval = True
            return shared

    def clear_state(self) -> None:
        """Empty the KV cache: the next prompt is evaluated from its first token.

        Raises:
            RuntimeError: A generation is running.
        """
        with self._exclusive():
            self._clear()

    def close(self) -> None:
        """Free the model and its context (and the draft model's)."""
        if self.draft_model is not None:
            self.draft_model.close()
        self._llm.close()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a generation is running on this model")
        try:
            yield
        finally:
            self._lock.release()

    def _clear(self) -> None:
        llm = self._llm
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm._requires_eval = True

    def _keep_prefix(self, n_tokens: int) -> None:
        """Drop the cells from position ``n_tokens`` on and check that what is left can
        continue from there: every position up to ``n_tokens - 1``, and for
        sliding-window layers at least the last window (the rule of llama.cpp's server)."""
        memory = llama_cpp.llama_get_memory(self._llm._ctx.ctx)
        seq = kv_state.SEQ_ID
        if not llama_cpp.llama_memory_seq_rm(memory, seq, n_tokens, -1):
            raise StateError("llama.cpp cannot cut this state to the shared prefix")
        first = llama_cpp.llama_memory_seq_pos_min(memory, seq)
        last = llama_cpp.llama_memory_seq_pos_max(memory, seq)
        n_swa = self._n_swa()
        needed = max(0, n_tokens - n_swa) if n_swa > 0 else 0
        if first > needed or last != n_tokens - 1:
            raise StateError(
                f"the restored cache holds positions {first}..{last}; continuing at "
                f"{n_tokens} needs {needed}..{n_tokens - 1}"
            )

    def _n_swa(self) -> int:
        """The sliding-window size (0: every layer attends to the whole context)."""
        return max(0, int(llama_cpp.llama_model_n_swa(self._llm.model)))


def _load_failure(path: Path) -> str:
    reason = llama_log.last_error()
    suffix = f": {reason}" if reason else ""
    return f"llama.cpp could not load {path}{suffix}"
