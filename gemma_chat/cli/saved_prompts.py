"""``ask -p NAME``, ``prompt -p NAME`` and ``gemma-chat prompts``: the saved prompts."""

from __future__ import annotations

import sys

from gemma_chat.cli.output import notify
from gemma_chat.config.config_file import load_config
from gemma_chat.config.prompt_library import (
    PromptEntry,
    failure_lines,
    find_prompt,
    load_prompts,
)
from gemma_chat.config.settings import SavedPrompt
from gemma_chat.sanitize import one_line, visible


def _library() -> tuple[dict[str, PromptEntry], list]:
    configured = {
        name: SavedPrompt.model_validate(table)
        for name, table in load_config().get("prompts", {}).items()
    }
    return load_prompts(configured)


def choose_prompt(name: str | None) -> PromptEntry | None:
    """The saved prompt ``-p NAME`` names (None without ``-p``); every other prompt file
    that failed to load is reported once, by name, on stderr.

    Raises:
        UsageError: No such prompt, or its file is malformed.
    """
    if name is None:
        return None
    found, failures = _library()
    entry = find_prompt(name, found, failures)
    for line in failure_lines(failures):
        notify(line)
    return entry


def list_prompts() -> int:
    """Print one line per saved prompt: its name, where it comes from, what it does."""
    found, failures = _library()
    width = max((len(name) for name in found), default=0)
    for name in sorted(found):
        entry = found[name]
        source = entry.source if entry.source in ("shipped", "config") else "file"
        schema = " [schema]" if entry.prompt.schema_ is not None else ""
        about = entry.prompt.description or ""
        # Names from the config and descriptions are the user's text: shown, never obeyed.
        line = f"{visible(name):<{width}}  {source:<7}  {one_line(about)}{schema}"
        print(line.rstrip())
    for line in failure_lines(failures):
        notify(line)
    sys.stdout.flush()
    return 0
