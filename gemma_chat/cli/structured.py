"""``ask --schema`` and ``ask --grammar``: the constraint a reply must follow."""

from __future__ import annotations

from pathlib import Path

from gemma_chat.errors import UsageError
from gemma_chat.structured.constraint import OutputConstraint, parse_schema, read_grammar


def constraint_from(schema: str | None, grammar: Path | None) -> OutputConstraint | None:
    """The constraint the options give, read and checked before any model loads.

    Raises:
        UsageError: Both are given, or either cannot be read or used.
    """
    if schema is not None and grammar is not None:
        raise UsageError("--schema and --grammar cannot be used together")
    if schema is not None:
        if not schema.strip():
            raise UsageError(
                "--schema needs a JSON Schema, @file.json or fields like 'name, age int'"
            )
        return parse_schema(schema)
    if grammar is not None:
        return read_grammar(grammar)
    return None
