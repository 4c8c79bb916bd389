"""The concise schema form: a JSON Schema object written as a short list of fields.

Fields are separated by commas or new lines. Each field is::

    NAME [TYPE] [: DESCRIPTION]

* ``TYPE`` is ``str`` (the default), ``int``, ``float``, ``bool``, ``list`` (of strings),
  ``list of TYPE``, or choices joined by ``|`` (``happy|sad|neutral``, an enum);
* the description after ``:`` is free text that guides the model; one that starts with
  ``list of`` or ``a list of`` makes a string field a list
  (``tags: list of keywords``). In double quotes it may hold commas and new lines
  (``summary: "two sentences, no more"``).

Every field is required and no other keys are allowed. So
``'name, age int, mood happy|sad, tags: list of keywords'`` is an object with a string
``name``, an integer ``age``, an enum ``mood`` and an array of strings ``tags``.
"""

from __future__ import annotations

import re
from typing import Any

from gemma_chat.errors import UsageError

TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "string": {"type": "string"},
    "text": {"type": "string"},
    "int": {"type": "integer"},
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "number": {"type": "number"},
    "bool": {"type": "boolean"},
    "boolean": {"type": "boolean"},
}
"""Type words and the JSON Schema each stands for."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LIST_DESCRIPTION = re.compile(r"(?:a\s+)?list\s+of\b", re.IGNORECASE)
_TYPE_HELP = "use str, int, float, bool, list, 'list of TYPE' or choices like a|b|c"


def concise_schema(text: str) -> dict[str, Any]:
    """The JSON Schema the concise form ``text`` describes.

    Raises:
        UsageError: A field has no name, a bad name, an unknown type, or is repeated.
    """
    properties: dict[str, dict[str, Any]] = {}
    for raw in _split_fields(text):
        field = raw.strip()
        if not field:
            continue
        name, schema = _field(field)
        if name in properties:
            raise UsageError(f"--schema: the field {name!r} is given twice")
        properties[name] = schema
    if not properties:
        raise UsageError("--schema: no fields (e.g. --schema 'name, age int')")
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _split_fields(text: str) -> list[str]:
    """The fields: split at commas and new lines outside double quotes.

    Raises:
        UsageError: A double quote is left open.
    """
    fields, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char in ",\n" and not quoted:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise UsageError('--schema: a double quote (") is left open')
    return [*fields, "".join(current)]


def _field(field: str) -> tuple[str, dict[str, Any]]:
    head, _, description = field.partition(":")
    words = head.split()
    if not words or not _NAME.fullmatch(words[0]):
        shown = words[0] if words else field
        raise UsageError(f"--schema: {shown!r} is not a field name (letters, digits, '_' and '-')")
    name, type_words = words[0], words[1:]
    schema = _type(name, type_words) if type_words else {"type": "string"}
    description = description.strip()
    if len(description) >= 2 and description[0] == description[-1] == '"':
        description = description[1:-1].strip()
    if description:
        if not type_words and _LIST_DESCRIPTION.match(description):
            schema = {"type": "array", "items": {"type": "string"}}
        schema["description"] = description
    return name, schema


def _type(name: str, words: list[str]) -> dict[str, Any]:
    """The schema of ``NAME TYPE...``."""
    lowered = [word.lower() for word in words]
    if lowered[0] == "list":
        if len(words) == 1:
            return {"type": "array", "items": {"type": "string"}}
        if len(words) == 3 and lowered[1] == "of":
            return {"type": "array", "items": _single(name, words[2])}
        raise UsageError(f"--schema: unknown type {' '.join(words)!r} for {name!r}: {_TYPE_HELP}")
    if len(words) != 1:
        raise UsageError(f"--schema: unknown type {' '.join(words)!r} for {name!r}: {_TYPE_HELP}")
    return _single(name, words[0])


def _single(name: str, word: str) -> dict[str, Any]:
    if "|" in word:
        choices = [choice for choice in word.split("|") if choice]
        if len(choices) < 2:
            raise UsageError(f"--schema: {word!r} for {name!r} needs two choices or more")
        return {"type": "string", "enum": choices}
    known = TYPES.get(word.lower())
    if known is None:
        raise UsageError(f"--schema: unknown type {word!r} for {name!r}: {_TYPE_HELP}")
    return dict(known)
