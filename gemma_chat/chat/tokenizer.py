"""What the template and the engine need from a tokenizer, and Gemma's control ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gemma_chat.errors import ModelError

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"


class Tokenizer(Protocol):
    """A model's vocabulary, as the core uses it. Implemented by each backend."""

    bos_id: int
    eos_id: int

    def tokenize(self, text: str) -> list[int]:
        """Tokenize plain text: never matches control tokens, adds no BOS."""
        ...

    def control_id(self, text: str) -> int | None:
        """The id of the control token spelled ``text``, or None if there is none."""
        ...

    def piece(self, token: int) -> bytes:
        """The bytes a token contributes to plain text (control tokens give b"")."""
        ...

    def token_text(self, token: int) -> str:
        """The token's text as stored in the vocabulary (control tokens included)."""
        ...

    def is_control(self, token: int) -> bool:
        """Whether the token is a control token."""
        ...

    def is_end_of_generation(self, token: int) -> bool:
        """Whether llama.cpp counts the token as an end-of-generation token."""
        ...


@dataclass(frozen=True)
class GemmaIds:
    """The control ids the Gemma template needs, looked up by their text.

    They differ between model families (106/107 in Gemma 2, 105/106 in Gemma 3), so they
    are never hard-coded.
    """

    bos: int
    eos: int
    start_of_turn: int
    end_of_turn: int

    @classmethod
    def lookup(cls, tokenizer: Tokenizer) -> GemmaIds:
        """Find the ids in ``tokenizer``'s vocabulary.

        Raises:
            ModelError: The vocabulary lacks a Gemma turn token.
        """
        start = tokenizer.control_id(START_OF_TURN)
        end = tokenizer.control_id(END_OF_TURN)
        missing = [
            name for name, tid in ((START_OF_TURN, start), (END_OF_TURN, end)) if tid is None
        ]
        if missing or start is None or end is None:
            raise ModelError(
                f"not a Gemma chat model: its vocabulary has no {' or '.join(missing)} token"
            )
        return cls(tokenizer.bos_id, tokenizer.eos_id, start, end)
