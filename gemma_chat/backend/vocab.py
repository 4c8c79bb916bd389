"""The :class:`~gemma_chat.chat.tokenizer.Tokenizer` of a llama.cpp model.

Pieces are decoded through the low-level ``llama_token_to_piece`` with a buffer that
grows to fit: ``Llama.detokenize`` uses a fixed 32-byte buffer and silently returns
nothing for longer pieces (the real Gemma vocabulary has 379 of them).
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp

_PIECE_BUFFER = 64


class LlamaVocab:
    """Tokenizer backed by a loaded ``llama_cpp`` model (full or vocab-only)."""

    def __init__(self, model: Any) -> None:
        """Wrap ``model``, a ``llama_cpp._internals.LlamaModel``."""
        self._model = model
        self._vocab = llama_cpp.llama_model_get_vocab(model.model)
        self.bos_id = int(llama_cpp.llama_vocab_bos(self._vocab))
        self.eos_id = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.size = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._pieces: dict[int, bytes] = {}

    def tokenize(self, text: str) -> list[int]:
        """Tokenize plain text. ``special=False``: no text becomes a control token."""
        return self._tokenize(text, special=False)

    def tokenize_special(self, text: str) -> list[int]:
        """Tokenize with control-token parsing on. Only for looking up control tokens."""
        return self._tokenize(text, special=True)

    def _tokenize(self, text: str, special: bool) -> list[int]:
        data = text.encode("utf-8")
        if not data:
            return []
        # Every token covers at least one byte, so this buffer always suffices and the
        # text is tokenized once (llama-cpp-python may tokenize twice to size its buffer).
        size = len(data) + 2
        buffer = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, False, special)
        if n < 0:  # pragma: no cover - cannot happen given the bound above
            raise RuntimeError(f"tokenization needs {-n} tokens")
        return list(buffer[:n])

    def control_id(self, text: str) -> int | None:
        """The id of the control token spelled ``text``, or None."""
        ids = self.tokenize_special(text)
        if len(ids) == 1 and self.is_control(ids[0]) and self.token_text(ids[0]) == text:
            return ids[0]
        return None

    def piece(self, token: int) -> bytes:
        """The bytes ``token`` contributes to plain text, whatever their length."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        size = _PIECE_BUFFER
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                piece = buffer.raw[:n]
                break
            size = -n  # a negative result is the size the piece needs
        self._pieces[token] = piece
        return piece

    def token_text(self, token: int) -> str:
        """The token's vocabulary text."""
        raw = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def is_control(self, token: int) -> bool:
        """Whether the token has llama.cpp's CONTROL attribute."""
        attr = llama_cpp.llama_vocab_get_attr(self._vocab, token)
        return bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL)

    def is_end_of_generation(self, token: int) -> bool:
        """Whether llama.cpp treats the token as end of generation."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
