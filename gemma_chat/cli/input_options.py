"""The options of ``ask`` about its input: attached files and inputs larger than the
context."""

from __future__ import annotations

from typing import Annotated

import typer

from gemma_chat.cli.options import MODEL

FileOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--file",
        "-f",
        metavar="PATH",
        help="Attach a text file (repeatable): its path and text go before the piped text "
        "and the question.",
        rich_help_panel=MODEL,
    ),
]
LongOpt = Annotated[
    str | None,
    typer.Option(
        "--long",
        metavar="map|refuse",
        help="Input larger than the context: answer it part by part and combine the notes "
        "(map), or refuse it (refuse). Default: the config's long_input, else map.",
        rich_help_panel=MODEL,
    ),
]
