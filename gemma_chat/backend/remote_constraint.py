"""How a reply's constraint (a JSON schema or a GBNF grammar) travels to each kind of
OpenAI-compatible server."""

from __future__ import annotations

from typing import Any

from gemma_chat.structured.constraint import OutputConstraint


def constraint_fields(constraint: OutputConstraint, server_kind: str | None) -> dict[str, Any]:
    """The request fields that carry a constraint, in each form the known servers read.

    * llama-server: ``json_schema`` (it builds the grammar) or ``grammar`` (GBNF);
    * vLLM: ``guided_json`` / ``guided_grammar``, and ``response_format``;
    * OpenAI's API: ``response_format`` with a ``json_schema``;
    * llama-cpp-python's server reads only ``grammar`` on completions, so it gets the
      schema as the GBNF grammar llama.cpp's own converter makes of it.

    Servers ignore the fields they do not know; one that refuses them is handled by the
    caller. llama-server refuses ``json_schema`` and ``grammar`` together, so a schema
    is never sent as both.
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
