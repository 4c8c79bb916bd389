"""A backend that replays scripted replies through a real tokenizer.

It runs no model: each reply is given as text, tokenized with a real vocabulary, and
yielded token by token, optionally paced, followed by ``<end_of_turn>``. The engine, its
stop rules and the UI see exactly what they would see from llama.cpp. Used by the TUI
tests and by the TUI streaming benchmark, which must measure the UI and not the model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

from gemma_chat.backend.base import BackendInfo
from gemma_chat.chat.tokenizer import GemmaIds, Tokenizer
from gemma_chat.config.settings import Sampling

Script = Callable[[int], str]
"""Returns the text of reply number ``n`` (0-based)."""


class ScriptedBackend:
    """Replays scripted replies. One generation at a time, like a real backend."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        replies: Sequence[str] | Script,
        *,
        delay_s: float = 0.0,
        n_ctx: int = 4096,
        model: str = "scripted.gguf",
    ) -> None:
        """Set up the replay.

        Args:
            tokenizer: A real vocabulary (e.g. from ``load_vocab``).
            replies: Reply texts in order (the last one repeats), or a function of the
                reply number.
            delay_s: Pause before each token, to stream at a human pace.
            n_ctx: The context size to report.
            model: The model name to report.
        """
        self.tokenizer = tokenizer
        self._replies = replies
        self._ids = GemmaIds.lookup(tokenizer)
        self.delay_s = delay_s
        self.info = BackendInfo(
            model=model,
            path=model,
            architecture="scripted",
            context_length=n_ctx,
            n_ctx=n_ctx,
            device="cpu",
            gpu_layers=0,
            threads=1,
        )
        self.replies_started = 0
        self._cached: list[int] = []
        self._last_prompt_evaluated = 0
        self._lock = threading.Lock()

    @property
    def is_remote(self) -> Literal[False]:
        """False: the model runs in this process (a token backend)."""
        return False

    @property
    def last_prompt_evaluated(self) -> int:
        """Prompt tokens not shared with the previous prompt (as a KV cache would)."""
        return self._last_prompt_evaluated

    def generate(
        self,
        prompt: Sequence[int],
        sampling: Sampling,
        seed: int,
        cancel: threading.Event | None = None,
        constraint: object | None = None,
    ) -> Iterator[int]:
        """Yield the next scripted reply's ids, then ``<end_of_turn>`` forever (a
        ``constraint`` is ignored: the script is the reply)."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a generation is already running on this model")
        try:
            number = self.replies_started
            self.replies_started += 1
            text = self._reply_text(number)
            common = 0
            for a, b in zip(self._cached, prompt, strict=False):
                if a != b:
                    break
                common += 1
            self._last_prompt_evaluated = len(prompt) - common
            self._cached = list(prompt)
            for token in self.tokenizer.tokenize(text):
                if self.delay_s:
                    time.sleep(self.delay_s)
                self._cached.append(token)
                yield token
            while True:
                yield self._ids.end_of_turn
        finally:
            self._lock.release()

    def close(self) -> None:
        """Nothing to free."""

    def _reply_text(self, number: int) -> str:
        if callable(self._replies):
            return self._replies(number)
        if not self._replies:
            return ""
        return self._replies[min(number, len(self._replies) - 1)]
