"""How a reply's constraint (a JSON schema or a GBNF grammar) travels to each kind of
OpenAI-compatible server."""

from __future__ import annotations

import json
from typing import Any

from gemma_chat.backend.sse import RemoteError
from gemma_chat.structured.constraint import OutputConstraint


def constraint_fields(constraint: OutputConstraint, server_kind: str | None) -> dict[str, Any]:
    """The request fields that carry a constraint, in each form the known servers read.

    * llama-server: ``json_schema`` (it builds the grammar) or ``grammar`` (GBNF);
    * vLLM: ``guided_json`` / ``guided_grammar``, and ``response_format``;
    * OpenAI's API: ``response_format`` with a ``json_schema``;
    * llama-cpp-python's server reads only ``grammar`` on completions, so it gets the
      schema as the GBNF grammar llama.cpp's own converter makes of it.

    Servers ignore the fields they do not know; one that refuses them is handled by the
    caller (see :func:`refuses_constraint`). llama-server refuses ``json_schema`` and
    ``grammar`` together, so a schema is never sent as both.
    """
    if constraint.schema is None:
        grammar = constraint.grammar or ""
        return {"grammar": grammar, "guided_grammar": grammar}
    if server_kind == "llama-cpp-python":
        from gemma_chat.backend.grammar import gbnf_for  # loads llama.cpp: only here

        return {"grammar": gbnf_for(constraint)}
    schema = constraint.schema
    return {
        "json_schema": schema,
        "guided_json": schema,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema},
        },
    }


_CONSTRAINT_WORDS = ("schema", "grammar", "response_format", "guided_")
"""Words that tie an error to the constraint fields (besides the fields' own names)."""
_UNSUPPORTED_WORDS = (
    "unrecognized",
    "unsupported",
    "not supported",
    "unknown field",
    "unknown parameter",
    "extra inputs are not permitted",
    "extra_forbidden",
)
"""How servers say a request field is not theirs (OpenAI, pydantic-based servers)."""


def refuses_constraint(error: RemoteError, fields: dict[str, Any]) -> bool:
    """Whether ``error`` (the answer to a request carrying ``fields``) is the server
    refusing the constraint, so the request may go again without it.

    Only a 400 or a 422 whose text names a constraint field (or a schema, a grammar), or
    says a field is not supported, is one. Anything else (429 rate limits, 401, 404, a 400
    "prompt too long") is the ordinary error it is: re-sending without the constraint
    would hammer the server and blame the schema for it.
    """
    status = getattr(error, "status", None)
    if not fields or status not in (400, 422):
        return False
    text = str(error)
    marker = f"HTTP {status}: "
    said = text.split(marker, 1)[1] if marker in text else text  # the server's own words
    said = said.lower()
    words = (*(name.lower() for name in fields), *_CONSTRAINT_WORDS, *_UNSUPPORTED_WORDS)
    return any(word in said for word in words)


class Refusals:
    """The constraints a server refused, and why: a refused one is no longer sent (its
    replies are validated on the client alone), while another one (a new ``/schema``)
    is offered to the server again."""

    def __init__(self) -> None:
        self._why: dict[tuple[str, str], str] = {}
        self.last: str | None = None
        """Why the server refused the last constraint it refused (None: it never did)."""

    def refused(self, constraint: OutputConstraint) -> str | None:
        """Why the server refused ``constraint`` (None: it has not)."""
        return self._why.get(_key(constraint))

    def note(self, constraint: OutputConstraint, why: str) -> None:
        """The server refused ``constraint`` for ``why`` (one line)."""
        self._why[_key(constraint)] = self.last = why


def _key(constraint: OutputConstraint) -> tuple[str, str]:
    if constraint.schema is None:
        return ("grammar", constraint.grammar or "")
    return ("schema", json.dumps(constraint.schema, sort_keys=True, default=str))
