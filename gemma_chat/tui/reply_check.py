"""A constrained reply (``/schema``, ``/prompt`` with a schema) checked when it ends."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gemma_chat.chat.conversation import StopReason
from gemma_chat.generation.events import ReplyDone
from gemma_chat.structured.constraint import OutputConstraint
from gemma_chat.structured.validate import InvalidReply, check_reply


class ReplyCheck:
    """Validates the reply being generated against the constraint it started with.

    Args:
        app: The app (its engine's backend, and notifications).
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._constraint: OutputConstraint | None = None
        self._refusal_told: OutputConstraint | None = None

    def expect(self, constraint: OutputConstraint | None) -> None:
        """A reply starts under ``constraint`` (None: free text)."""
        self._constraint = constraint

    def checked(self, done: ReplyDone) -> ReplyDone:
        """Validate a constrained reply: one that does not match is kept, marked
        ``schema_mismatch``, and said in one notification; a cut-off one says so too."""
        constraint, self._constraint = self._constraint, None
        if constraint is None:
            return done
        self._tell_refusal(constraint)
        if done.stop_reason is StopReason.CANCELLED or done.error:
            return done  # a failed reply's own notice says the real cause
        try:
            check_reply(done.text, done.stop_reason.value, constraint)
        except InvalidReply as exc:
            self._app.notify(str(exc), severity="error", timeout=15, markup=False)
            if done.stop_reason is StopReason.END_OF_TURN:
                return replace(done, stop_reason=StopReason.SCHEMA_MISMATCH)
        return done

    def _tell_refusal(self, constraint: OutputConstraint) -> None:
        """Say once, as ``ask`` does, that the server refused ``constraint``."""
        refused_by = getattr(self._app.engine and self._app.engine.backend, "refused", None)
        refused = refused_by(constraint) if refused_by is not None else None
        if refused and self._refusal_told is not constraint:
            self._refusal_told = constraint
            kind = "schema" if constraint.schema is not None else "grammar"
            self._app.notify(
                f"The server refused the {kind}, so replies are not constrained (only "
                f"validated here): {refused}",
                severity="warning",
                timeout=15,
            )
