"""The slash commands and saved prompts in the command palette (Ctrl+P)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from textual.app import SystemCommand
from textual.markup import escape

from gemma_chat.chat import commands as slash
from gemma_chat.sanitize import one_line

_PALETTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def palette_commands(app: Any, run: Callable[[str], Awaitable[None]]) -> Iterable[SystemCommand]:
    """Every slash command and saved prompt (``run`` runs a command line; a command
    that needs an argument is put into the input to finish instead)."""
    for command in slash.COMMANDS:
        if command.args and command.name not in ("copy", "theme", "search"):
            callback: Callable[[], object] = _prefill(app, command)
        else:
            callback = _runner(run, f"/{command.name}")
        yield SystemCommand(command.usage, command.help, callback)
    yield SystemCommand("/copy code", "Copy the last code block", _runner(run, "/copy code"))
    yield SystemCommand("/schema off", "Replies are free text again", _runner(run, "/schema off"))
    from gemma_chat.config.prompt_library import load_prompts

    found, _ = load_prompts(app.settings.prompts)  # failures: reported on use
    for name, entry in sorted(found.items()):
        if not _PALETTE_NAME.fullmatch(name):
            continue  # a config key the palette could not show as typed: type it
        # The palette reads its text as markup: a description is the user's text.
        about = escape(one_line(entry.prompt.description or "Use this saved prompt"))
        yield SystemCommand(f"/prompt {name}", about, _runner(run, f"/prompt {name}"))


def _runner(run: Callable[[str], Awaitable[None]], text: str) -> Callable[[], Awaitable[None]]:
    async def go() -> None:
        await run(text)

    return go


def _prefill(app: Any, command: slash.SlashCommand) -> Callable[[], None]:
    def fill() -> None:
        app.prompt.set_text(f"/{command.name} ")
        app.prompt.focus()

    return fill
