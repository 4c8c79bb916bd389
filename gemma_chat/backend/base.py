"""The interface between the engine and a model runtime: a token backend (the model runs
here) or a text backend (a server), told apart by ``is_remote``."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from gemma_chat.backend.sse import TextChunk
from gemma_chat.chat.tokenizer import Tokenizer
from gemma_chat.config.settings import Sampling
from gemma_chat.structured.constraint import OutputConstraint


class Cancelled(Exception):
    """Raised inside a backend's generator when the cancel event is set mid-prompt."""


class StateError(Exception):
    """A saved KV state cannot be used (damaged, truncated, or from another model).

    The backend's context is left clean (empty) or untouched, never half-loaded.
    """


@dataclass(frozen=True)
class BackendInfo:
    """What the user is told about the loaded model and where it runs.

    Attributes:
        model: The model's display name (file name).
        path: The model file's path.
        architecture: GGUF architecture, e.g. ``gemma2``.
        context_length: The model's trained context.
        n_ctx: The context window in use.
        device: ``"cpu"`` or ``"gpu"``: what is actually used.
        gpu_layers: Layers actually offloaded to the GPU (0 on the CPU).
        threads: CPU threads.
    """

    model: str
    path: str
    architecture: str
    context_length: int | None
    n_ctx: int
    device: str
    gpu_layers: int
    threads: int


class TokenBackend(Protocol):
    """A loaded model that generates from token ids (llama.cpp, the scripted replay).

    The engine renders the Gemma template to ids with :attr:`tokenizer` and decides where
    the reply ends. One generation at a time. It may also save and restore its KV cache:
    see :class:`StatefulBackend`.
    """

    info: BackendInfo

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's vocabulary."""
        ...

    @property
    def is_remote(self) -> Literal[False]:
        """False: the model runs here (the one "is this remote?" answer)."""
        ...

    @property
    def last_prompt_evaluated(self) -> int:
        """Prompt tokens the last generation actually evaluated (the rest came from cache)."""
        ...

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        seed: int,
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[int]:
        """Yield sampled token ids, forever, until the caller stops iterating.

        With a ``constraint`` the ids follow its grammar, and the end-of-turn id is
        possible only once the grammar is complete.

        Raises:
            Cancelled: ``cancel`` was set while the prompt was being evaluated.
            UsageError: The constraint cannot be used (a grammar that does not parse).
        """
        ...

    def close(self) -> None:
        """Free the model."""
        ...


class TextBackend(Protocol):
    """A model behind a server that takes a text prompt and streams text (an
    OpenAI-compatible server). It has no tokenizer here: the engine renders the template
    as text and token counts are estimates unless the server reports them.
    """

    info: BackendInfo

    @property
    def is_remote(self) -> Literal[True]:
        """True: the model runs on a server (no tokenizer, no KV cache here)."""
        ...

    @property
    def api_path(self) -> str:
        """The endpoint the last reply used: ``"completions"`` or ``"chat"``."""
        ...

    def stream_text(
        self,
        prompt: str,
        *,
        messages: list[dict[str, str]],
        sampling: Sampling,
        seed: int,
        stop: list[str],
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[TextChunk]:
        """Stream a reply to ``prompt`` (or to ``messages``, on a chat-only server),
        sending ``constraint`` in the form the server understands.

        Raises:
            RemoteError: Any failure, before or during the stream.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


Backend = TokenBackend | TextBackend
"""Any loaded model. ``backend.is_remote`` tells the two kinds apart."""


@runtime_checkable
class StatefulBackend(Protocol):
    """Optional capability: save the KV cache to a file and restore it later.

    :class:`gemma_chat.backend.local.LlamaBackend` has it; the scripted backend does not.
    ``gemma_chat.backend.kv_cache`` uses it to make resuming a long conversation fast. None of
    these may run during a generation: they raise ``RuntimeError`` then, like a second
    ``generate`` does.
    """

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The token ids the KV cache holds now, in order from position 0."""
        ...

    @property
    def state_signature(self) -> dict[str, object]:
        """Everything besides the model file that a saved state must match to load
        (runtime version, cache layout)."""
        ...

    def state_size(self) -> int:
        """Bytes :meth:`save_state` would write now."""
        ...

    def save_state(self, path: Path, prompt_ids: Sequence[int] | None = None) -> int:
        """Write the KV cache and its token ids to ``path``; return the tokens saved
        (0: nothing was written). With ``prompt_ids`` only the prefix the cache shares
        with them is kept and saved.

        Raises:
            StateError: The runtime could not produce the state.
            OSError: The file could not be written.
        """
        ...

    def state_tokens(self, path: Path) -> list[int]:
        """The token ids a saved state holds, without loading it.

        Raises:
            StateError: Not a usable state file.
            OSError: The file cannot be read.
        """
        ...

    def restore_state(self, path: Path, prompt_ids: Sequence[int], min_tokens: int = 1) -> int:
        """Load a saved state, keeping only its prefix shared with ``prompt_ids``.

        Returns the tokens restored; the next ``generate`` evaluates only the rest of its
        prompt. Returns 0, leaving the cache untouched, when fewer than ``min_tokens``
        are shared or the state cannot be cut to the shared prefix (a sliding-window
        model); nothing is loaded when the cache already holds the shared prefix.
        After an error the cache is empty or untouched, never half-loaded.

        Raises:
            StateError: The file cannot be used.
            OSError: The file cannot be read.
        """
        ...

    def clear_state(self) -> None:
        """Empty the KV cache: the next prompt is evaluated from its first token."""
        ...


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading token ids two sequences share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count
