"""The options of ``ask`` and ``prompt`` about the reply's form: a schema, a grammar, a
saved prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gemma_chat.cli.options import MODEL

STRUCTURED = "Structured output"

SchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--schema",
        metavar="SCHEMA",
        help="Constrain the reply to JSON matching SCHEMA, and validate it: a JSON Schema "
        "inline, @file.json, or the concise form 'name, age int, mood happy|sad, tags: "
        "list of keywords'. A reply that does not match exits 1 (it is kept, marked).",
        rich_help_panel=STRUCTURED,
    ),
]
GrammarOpt = Annotated[
    Path | None,
    typer.Option(
        "--grammar",
        metavar="FILE.gbnf",
        help="Constrain the reply with a GBNF grammar (llama.cpp's format).",
        rich_help_panel=STRUCTURED,
    ),
]

PromptNameOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        "-p",
        metavar="NAME",
        help="Use a saved prompt: its system text, template, sampling and schema (see: "
        "gemma-chat prompts). Options given here win over it.",
        rich_help_panel=MODEL,
    ),
]
