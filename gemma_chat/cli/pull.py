"""``gemma-chat pull``: download a Gemma GGUF from the Hugging Face Hub into the models
folder.

The work is in :mod:`gemma_chat.pull.download` (imported inside the command, so registering it
costs other commands nothing). Notes and progress bars go to stderr; stdout gets the
result (``--json``: one JSON object).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gemma_chat.cli.output import notify
from gemma_chat.units import format_bytes

SpecArg = Annotated[
    str | None,
    typer.Argument(
        metavar="MODEL",
        help="An alias (gemma2:9b, gemma2:9b:Q6_K; see --list) or a repository (org/name).",
    ),
]
FileArg = Annotated[
    str | None,
    typer.Argument(metavar="FILE", help="The GGUF file to take from a repository."),
]
QuantOpt = Annotated[
    str | None,
    typer.Option("--quant", "-q", metavar="QUANT", help="Quantization to pick (default Q4_K_M)."),
]
RevisionOpt = Annotated[
    str | None, typer.Option("--revision", help="Branch, tag or commit (default: main).")
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace a different file of the same name.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ListOpt = Annotated[bool, typer.Option("--list", help="List the built-in aliases and exit.")]


def pull(
    spec: SpecArg = None,
    filename: FileArg = None,
    quant: QuantOpt = None,
    revision: RevisionOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    list_: ListOpt = False,
) -> None:
    """Download a GGUF from the Hugging Face Hub into the models folder (resumable,
    sha256-verified). Aliases: gemma2:2b, gemma2:9b, gemma2:27b, gemma3:270m, gemma3:1b."""
    from gemma_chat import paths
    from gemma_chat.cli import run_settings
    from gemma_chat.errors import UsageError
    from gemma_chat.pull.catalog import resolve_spec
    from gemma_chat.pull.download import pull as run_pull

    if list_:
        list_aliases(json_out)
        return
    if spec is None:
        raise UsageError("pull needs a MODEL: an alias (see pull --list) or org/name")
    target = resolve_spec(spec, filename, quant, revision)
    settings = run_settings.build_settings(threads_env=False)  # no model runs
    models_dir = paths.models_dir(settings.models_dir)
    result = run_pull(
        target,
        models_dir,
        force=force,
        progress=sys.stderr.isatty(),
        notify=notify,
    )
    if json_out:
        print(json.dumps(result.to_json(), indent=2))
        return
    check = "sha256 verified" if result.verified else "not verified"
    origin = {"downloaded": "downloaded", "hf-cache": "from the Hugging Face cache"}.get(
        result.source, "already there"
    )
    print(f"{result.path}")
    notify(f"{result.repo}: {result.filename}, {format_bytes(result.size)}, {check}, {origin}")
    notify(f"use it with: gemma-chat --model {Path(result.path).stem}")


def list_aliases(json_out: bool) -> None:
    """Print the built-in aliases."""
    from gemma_chat.pull.catalog import ALIASES, DEFAULT_QUANT

    if json_out:
        data = {name: {"repo": a.repo, "file": a.pattern} for name, a in ALIASES.items()}
        print(json.dumps(data, indent=2))
        return
    for name, alias in ALIASES.items():
        example = alias.pattern.format(quant=DEFAULT_QUANT)
        print(f"{name:<12} {alias.repo:<32} {example}")
