"""Validation errors in plain words: pydantic's messages ("Input should be a valid number,
unable to parse string as a number") become "must be a number, not 'abc'". Used for the
config file, the command line, ``/set`` and the settings form, saved prompts, theme files
and ``history import``.

Core code: no Textual.
"""

from __future__ import annotations

from typing import Any

from gemma_chat.sanitize import one_line

_INPUT_SHOWN = 40
"""The longest bad value quoted back (a longer one is left out)."""

_PLAIN: dict[str, str] = {
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "is too large a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table of keys and values",
    "model_type": "must be a table of keys and values",
    "model_attributes_type": "must be a table of keys and values",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
    "none_required": "must be empty",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be {ge} or more",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be {le} or less",
    "multiple_of": "must be a multiple of {multiple_of}",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "string_too_long": "is too long (at most {max_length} characters)",
    "too_long": "has too many items (at most {max_length})",
    "too_short": "has too few items (at least {min_length})",
    "string_pattern_mismatch": "has characters that are not allowed",
    "url_parsing": "must be a URL",
    "url_scheme": "must be an http:// or https:// URL",
}
"""Plain words for each pydantic error type (``{name}``: from the error's context)."""

_QUOTE_INPUT = frozenset(
    {
        "float_parsing", "int_parsing", "int_from_float", "bool_parsing",
        "greater_than", "greater_than_equal", "less_than", "less_than_equal",
        "literal_error", "enum", "url_parsing", "url_scheme", "multiple_of",
    }
)  # fmt: skip
"""Error types whose message is clearer with the bad value quoted back."""


def plain_message(error: dict[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) in plain words,
    without its location. Our own validators' messages are whole sentences: kept."""
    kind = str(error.get("type", ""))
    context = error.get("ctx") or {}
    if kind == "value_error" or kind == "assertion_error":
        return one_line(str(error.get("msg", ""))).removeprefix("Value error, ")
    if kind == "string_too_short":
        least = context.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    template = _PLAIN.get(kind)
    if template is None:  # a rare type: pydantic's words, without its jargon
        return one_line(str(error.get("msg", "is not valid"))).removeprefix("Value error, ")
    try:
        message = template.format(**{key: _shown(value) for key, value in context.items()})
    except (KeyError, IndexError):
        message = template.split(" {", 1)[0]
    bad = error.get("input")
    if kind in _QUOTE_INPUT and isinstance(bad, str | int | float) and not isinstance(bad, bool):
        quoted = one_line(repr(bad))
        if len(quoted) <= _INPUT_SHOWN:
            message += f", not {quoted}"
    return message


def _shown(value: object) -> str:
    """A context value as words (``'user' or 'model'`` stays as pydantic spells it)."""
    return one_line(str(value))
