"""The interface between the engine and a model runtime."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gemma_chat.settings import Sampling
from gemma_chat.tokenizer import Tokenizer


class Cancelled(Exception):
    """Raised inside a backend's generator when the cancel event is set mid-prompt."""


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


class Backend(Protocol):
    """A loaded model that can generate from token ids. One generation at a time."""

    tokenizer: Tokenizer
    info: BackendInfo

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
    ) -> Iterator[int]:
        """Yield sampled token ids, forever, until the caller stops iterating.

        Raises:
            Cancelled: ``cancel`` was set while the prompt was being evaluated.
        """
        ...

    def close(self) -> None:
        """Free the model."""
        ...
