"""The local backend: llama-cpp-python on a GGUF file.

llama.cpp is imported here only, so ``import gemma_chat`` stays cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import llama_cpp

from gemma_chat.backend import llama_log
from gemma_chat.backend.base import BackendInfo, Cancelled
from gemma_chat.backend.offload import OffloadPlan
from gemma_chat.backend.vocab import LlamaVocab
from gemma_chat.errors import ModelError
from gemma_chat.settings import Sampling

N_BATCH = 512


class _CountingLlama(llama_cpp.Llama):
    """``Llama`` that counts evaluated tokens and can be cancelled between batches.

    ``Llama.generate`` calls ``self.eval`` once for the un-cached part of the prompt and
    then once per sampled token, so counting here measures the KV-cache reuse exactly.
    """

    evaluated = 0
    cancel: threading.Event | None = None

    def eval(self, tokens: Sequence[int]) -> None:
        tokens = list(tokens)
        for start in range(0, len(tokens), self.n_batch):
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled
            chunk = tokens[start : start + self.n_batch]
            super().eval(chunk)
            self.evaluated += len(chunk)


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def default_threads() -> int:
    """Every core this process may run on."""
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
        """Load the model. Validate and probe the file first (see ``gemma_chat.models``).

        ``keep_stderr`` leaves stderr open during the load (see :func:`load_vocab`).

        Raises:
            ModelError: llama.cpp could not load the file or create the context.
        """
        llama_log.install(debug)
        llama_log.clear()
        threads = threads or default_threads()
        try:
            self._llm = _CountingLlama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=min(N_BATCH, n_ctx),
                n_gpu_layers=offload.n_gpu_layers,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=flash_attn,
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
        self._last_prompt_evaluated = 0
        self._lock = threading.Lock()

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and diagnostics)."""
        return self._llm

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
    ) -> Iterator[int]:
        """Yield sampled token ids until the caller stops iterating.

        ``Llama.generate`` re-uses the longest common prefix of the previous prompt and
        this one, so re-sending the same history evaluates only the new tokens.
        """
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a generation is already running on this model")
        llm = self._llm
        try:
            llm.set_seed(seed)
            llm.cancel = cancel
            before = llm.evaluated
            self._last_prompt_evaluated = 0
            first = True
            for token in llm.generate(
                list(prompt),
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
            ):
                if first:
                    self._last_prompt_evaluated = llm.evaluated - before
                    first = False
                yield int(token)
        finally:
            llm.cancel = None
            self._lock.release()

    def close(self) -> None:
        """Free the model and its context."""
        self._llm.close()


def _load_failure(path: Path) -> str:
    reason = llama_log.last_error()
    suffix = f": {reason}" if reason else ""
    return f"llama.cpp could not load {path}{suffix}"
