"""What constrains a reply, read from ``--schema``/``--grammar`` text or a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_chat.errors import UsageError
from gemma_chat.files import read_regular_file
from gemma_chat.structured.concise import concise_schema
from gemma_chat.structured.grammar_depth import check_nesting
from gemma_chat.structured.json_depth import json_depth
from gemma_chat.structured.refs import check_refs

SCHEMA_FILE_LIMIT = 1024 * 1024
"""The largest schema or grammar file read: a real one is a few KiB."""
_MAX_DEPTH = 64
"""Deeper schemas are refused: the grammar converter and the validator recurse."""


@dataclass(frozen=True)
class OutputConstraint:
    """A JSON Schema or a GBNF grammar the reply must follow.

    Attributes:
        schema: The JSON Schema (the reply is validated against it on the client).
        grammar: A raw GBNF grammar (``--grammar``), for a local model or llama-server;
            the reply is not validated beyond it.
        label: Where it came from (a file name, ``inline``, ``concise``), for the
            status bar and messages.
    """

    schema: dict[str, Any] | None = None
    grammar: str | None = None
    label: str = ""

    @property
    def schema_json(self) -> str | None:
        """The schema as compact JSON (what servers and the grammar converter take)."""
        return None if self.schema is None else json.dumps(self.schema, ensure_ascii=False)


def parse_schema(text: str, base: Path | None = None) -> OutputConstraint:
    """Read a ``--schema`` value: inline JSON, ``@file.json`` or the concise form.

    Args:
        text: The value.
        base: The folder a relative ``@file`` is relative to (default: the current one).

    Raises:
        UsageError: Malformed JSON, an unreadable file, an unknown concise type, or not
            a valid JSON Schema.
    """
    stripped = text.strip()
    if stripped.startswith("@"):
        path = Path(stripped[1:]).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        schema = _json(_read(path, "schema"), f"the schema file {path.name}")
        label = path.name
    elif stripped.startswith(("{", "[", '"')) or stripped in ("true", "false"):
        schema, label = _json(stripped, "the inline schema"), "inline"
    else:
        schema, label = concise_schema(stripped), "concise"
    check_schema(schema)
    return OutputConstraint(schema=schema, label=label)


def read_grammar(path: Path) -> OutputConstraint:
    """Read a ``--grammar FILE.gbnf``.

    Raises:
        UsageError: The file cannot be read, is not UTF-8 text, or is empty.
    """
    text = _read(path, "grammar")
    if not text.strip():
        raise UsageError(f"--grammar: {path.name} is empty")
    check_nesting(text, "--grammar")
    return OutputConstraint(grammar=text, label=path.name)


def check_schema(schema: Any) -> None:
    """Refuse what is not a usable JSON Schema (an object, valid, not absurdly deep).

    Raises:
        UsageError: It is not.
    """
    import jsonschema  # deferred: only schema runs pay for it

    if not isinstance(schema, dict):
        raise UsageError('--schema: a JSON Schema is an object, e.g. {"type": "object"}')
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError):
        raise UsageError("--schema: the schema holds a value JSON cannot carry") from None
    if json_depth(schema) > _MAX_DEPTH:
        raise UsageError(f"--schema: the schema is nested more than {_MAX_DEPTH} deep")
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.path) or "the schema"
        raise UsageError(f"--schema: not a valid JSON Schema at {where}: {exc.message}") from None
    check_refs(schema)


def _read(path: Path, what: str) -> str:
    try:
        data = read_regular_file(path, SCHEMA_FILE_LIMIT)
    except FileNotFoundError:
        raise UsageError(f"--{what}: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"--{what}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise UsageError(f"--{what}: {path.name} is not UTF-8 text") from None


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--schema: {what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise UsageError(f"--schema: {what} is nested too deeply") from None
