"""The reply checked on the client: parsed as JSON and validated against the schema,
whatever the backend did to constrain it."""

from __future__ import annotations

import json
from typing import Any

from gemma_chat.errors import GemmaChatError
from gemma_chat.structured.constraint import OutputConstraint

_MAX_SHOWN = 120
"""The most characters of a validator message shown: it may quote the reply."""


class InvalidReply(GemmaChatError):
    """The reply is not JSON or does not match the schema (exit 1)."""


def parse_reply(text: str, constraint: OutputConstraint) -> Any:
    """The reply's parsed value, checked against ``constraint.schema``.

    Returns:
        The parsed JSON value; None for a grammar-only constraint (nothing to check).

    Raises:
        InvalidReply: The text is not one JSON value, or it does not match the schema.
    """
    if constraint.schema is None:
        return None
    import jsonschema  # deferred: only schema runs pay for it

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = (
            "ends before the JSON is complete"
            if exc.pos >= len(text.rstrip())
            else (f"is not valid JSON: {exc.msg} at character {exc.pos}")
        )
        raise InvalidReply(f"the reply {where}") from None
    except RecursionError:
        raise InvalidReply("the reply is JSON nested too deeply") from None
    validator = jsonschema.validators.validator_for(constraint.schema)(constraint.schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    except RecursionError:
        raise InvalidReply("the reply is nested too deeply to check against the schema") from None
    except Exception as exc:  # referencing's errors, and whatever a validator may raise
        raise InvalidReply(
            f"the reply could not be checked against the schema: {type(exc).__name__}"
        ) from None
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        message = error.message
        if len(message) > _MAX_SHOWN:
            message = message[: _MAX_SHOWN - 1] + "…"
        raise InvalidReply(f"the reply does not match the schema at {where}: {message}")
    return data


def check_reply(text: str, stop: str, constraint: OutputConstraint) -> Any:
    """:func:`parse_reply` for a finished reply that stopped for ``stop`` (a stop reason's
    value): one that did not end its turn was cut off inside the grammar (at max tokens,
    by the repetition guard, a full context or a failed server), and that is the error,
    whatever its text happens to parse as.

    Raises:
        InvalidReply: The reply was cut off, or it does not match.
    """
    if stop != "end_of_turn":
        hint = " (raise --max-tokens)" if stop == "max_tokens" else ""
        what = "its JSON" if constraint.schema is not None else "its grammar"
        raise InvalidReply(
            f"the reply was cut off ({stop.replace('_', ' ')}) before {what} was complete"
            f"{hint}; the partial reply is kept"
        )
    return parse_reply(text, constraint)
