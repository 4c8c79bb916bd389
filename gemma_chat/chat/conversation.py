"""The conversation the app owns: an optional system prompt and alternating turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Role(str, Enum):
    """Gemma's two roles. There is no system role."""

    USER = "user"
    MODEL = "model"


class StopReason(str, Enum):
    """Why a reply ended."""

    END_OF_TURN = "end_of_turn"
    """The model ended its turn (``<end_of_turn>``, ``<eos>`` or the marker spelled as text)."""
    NEW_TURN = "new_turn"
    """The model opened a new ``<start_of_turn>`` without closing its own."""
    MAX_TOKENS = "max_tokens"
    """The reply reached the max-tokens limit."""
    REPETITION = "repetition"
    """The repetition guard saw the reply looping on the same span."""
    CANCELLED = "cancelled"
    """The user stopped the reply."""
    CONTEXT_FULL = "context_full"
    """The context window filled up."""
    FAILED = "failed"
    """A remote server's connection failed mid-reply; the text received so far is kept."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """The reply ended, but it is not JSON that matches the schema it was asked for; the
    text is kept as it came."""


@dataclass
class Turn:
    """One message.

    Attributes:
        role: Who wrote it.
        text: The text as shown to the user.
        stop_reason: For model turns, why the reply ended.
        token_ids: For model turns, the ids the model generated (whitespace-only tokens
            at the ends dropped), when they decode to ``text`` up to surrounding
            whitespace. Re-sending them (rather than re-tokenizing the text)
            keeps the prompt identical to what the KV cache holds, so the next turn
            only evaluates its new tokens.
        typed: For user turns a saved prompt's template made, what the user typed
            (what Ctrl+O and the input history give back, to be filled again).
        model: For model turns, the model file that wrote it, when known (shown above
            the reply).
    """

    role: Role
    text: str
    stop_reason: StopReason | None = None
    token_ids: tuple[int, ...] | None = None
    typed: str | None = None
    model: str | None = None

    @property
    def partial(self) -> bool:
        """True for a model reply that did not end at the end of its turn."""
        return self.role is Role.MODEL and self.stop_reason not in (
            None,
            StopReason.END_OF_TURN,
        )


SUMMARY_INTRO = "A summary of our conversation so far:"
"""How a compacted conversation's summary opens, folded into the first user turn."""


@dataclass(frozen=True)
class Summary:
    """The oldest turns of a conversation, compacted (``/compact``).

    Attributes:
        turns: How many of the first turns it stands for (whole user/model pairs).
        text: The model's summary of them.
    """

    turns: int
    text: str


@dataclass
class Conversation:
    """Ordered user and model turns plus an optional system prompt.

    Turns strictly alternate, starting with the user, as Gemma requires. With a
    ``summary``, prompts leave out the turns it stands for and fold it into the first
    user turn kept, after the system prompt (the turns themselves stay, on screen and
    in the history).
    """

    system: str | None = None
    turns: list[Turn] = field(default_factory=list)
    summary: Summary | None = None

    def prompt_view(self) -> tuple[list[Turn], str | None]:
        """The turns a prompt is made of, and the text to fold into its first user turn
        (the system prompt, then the summary)."""
        if self.summary is None or self.summary.turns > len(self.turns):
            return self.turns, self.system  # (edited back past what it summarised: unused)
        folded = f"{SUMMARY_INTRO}\n{self.summary.text.strip()}"
        system = f"{self.system.strip()}\n\n{folded}" if self.system else folded
        return self.turns[self.summary.turns :], system

    def add_user(self, text: str, typed: str | None = None) -> Turn:
        """Append a user turn (``typed``: what a saved prompt's template made ``text`` of).

        Raises:
            ValueError: The previous turn is also a user turn.
        """
        if self.turns and self.turns[-1].role is Role.USER:
            raise ValueError("a user turn must follow a model turn")
        turn = Turn(Role.USER, text, typed=typed if typed != text else None)
        self.turns.append(turn)
        return turn

    def add_model(
        self,
        text: str,
        stop_reason: StopReason,
        token_ids: tuple[int, ...] | None = None,
    ) -> Turn:
        """Append the model's reply to the pending user turn.

        Raises:
            ValueError: There is no pending user turn.
        """
        if not self.turns or self.turns[-1].role is not Role.USER:
            raise ValueError("a model turn must follow a user turn")
        turn = Turn(Role.MODEL, text, stop_reason, token_ids)
        self.turns.append(turn)
        return turn

    @property
    def pending_user(self) -> Turn | None:
        """The last turn if it is a user turn awaiting a reply."""
        if self.turns and self.turns[-1].role is Role.USER:
            return self.turns[-1]
        return None
