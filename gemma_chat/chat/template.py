"""The Gemma chat template, rendered straight to token ids.

Layout (Google's format; there is no system role)::

    <bos><start_of_turn>user
    {system}\n\n{user}<end_of_turn>
    <start_of_turn>model
    {model}<end_of_turn>
    <start_of_turn>user
    {user}<end_of_turn>
    <start_of_turn>model

Control tokens are inserted by id. Everything else, the scaffolding words included, is
tokenized as plain text, so no text a person types, pastes or pipes in can become a
control token. BOS is added exactly once, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gemma_chat.chat.conversation import Conversation, Role, Turn
from gemma_chat.chat.tokenizer import GemmaIds, Tokenizer


def fold_system(system: str | None, user_text: str) -> str:
    """Fold a system prompt into the first user message: ``system + blank line + user``."""
    system = (system or "").strip()
    user_text = user_text.strip()
    return f"{system}\n\n{user_text}" if system else user_text


@dataclass(frozen=True)
class RenderedToken:
    """One token of a rendered prompt, for the template inspector."""

    id: int
    piece: str
    control: bool


class GemmaTemplate:
    """Renders conversations to token ids for one tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids = GemmaIds.lookup(tokenizer)
        self._newline = tokenizer.tokenize("\n")
        self._model_header = tokenizer.tokenize("model\n")

    def turn_ids(self, turn: Turn, system: str | None = None) -> list[int]:
        """Token ids of one whole turn, from ``<start_of_turn>`` to the newline after it.

        Args:
            turn: The turn.
            system: A system prompt to fold in (only for the first user turn).
        """
        ids = [self.ids.start_of_turn]
        if turn.role is Role.USER:
            ids += self.tokenizer.tokenize(f"user\n{fold_system(system, turn.text)}")
        else:
            ids += self._model_header
            ids += self._model_body(turn)
        ids.append(self.ids.end_of_turn)
        ids += self._newline
        return ids

    def generation_prompt(self) -> list[int]:
        """The ids that open the model's turn: ``<start_of_turn>model\\n``."""
        return [self.ids.start_of_turn, *self._model_header]

    def render(self, turns: Sequence[Turn], system: str | None = None) -> list[int]:
        """Render turns (the last one a user turn) plus the generation prompt.

        Args:
            turns: Alternating turns starting with a user turn.
            system: The system prompt, folded into the first user turn.
        """
        ids = [self.ids.bos]
        for index, turn in enumerate(turns):
            ids += self.turn_ids(turn, system if index == 0 else None)
        ids += self.generation_prompt()
        return ids

    def render_conversation(self, conversation: Conversation) -> list[int]:
        """Render a whole conversation that ends with a pending user turn."""
        return self.render(conversation.turns, conversation.system)

    def inspect(self, ids: Sequence[int]) -> tuple[str, list[RenderedToken]]:
        """The exact prompt text with control tokens spelled out, and each token.

        Control tokens show as their vocabulary text (``<start_of_turn>``); other tokens
        show as the text they decode to.
        """
        tokens: list[RenderedToken] = []
        for tid in ids:
            control = self.tokenizer.is_control(tid)
            if control:
                piece = self.tokenizer.token_text(tid)
            else:
                piece = self.tokenizer.piece(tid).decode("utf-8", errors="backslashreplace")
            tokens.append(RenderedToken(tid, piece, control))
        raw = bytearray()
        for tid, token in zip(ids, tokens, strict=True):
            raw += token.piece.encode() if token.control else self.tokenizer.piece(tid)
        return raw.decode("utf-8", errors="replace"), tokens

    def _model_body(self, turn: Turn) -> list[int]:
        text = turn.text.strip()
        if turn.token_ids is not None:
            # Re-send the generated ids so the prompt matches the KV cache exactly.
            return list(turn.token_ids)
        return self.tokenizer.tokenize(text) if text else []
