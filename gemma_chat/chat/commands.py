"""Slash commands: the list, parsing, completion, and the ``/set`` parameters.

Pure: no Textual. The TUI maps each command to an action and lists them in its help
screen and command palette.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gemma_chat.config.config_file import describe_validation_error
from gemma_chat.config.settings import SAMPLING_KEYS, RepeatGuard, Sampling
from gemma_chat.errors import UsageError


@dataclass(frozen=True)
class SlashCommand:
    """One slash command.

    Attributes:
        name: The word after the slash.
        args: How its arguments look, for help and completion ("" for none).
        help: One line of help.
    """

    name: str
    args: str
    help: str

    @property
    def usage(self) -> str:
        """``/name args``."""
        return f"/{self.name} {self.args}".rstrip()


COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand("help", "", "Show keys and commands"),
    SlashCommand("new", "", "Start a new conversation (settings back to the defaults)"),
    SlashCommand("clear", "", "Clear the conversation, keeping the system prompt and settings"),
    SlashCommand("system", "TEXT", "Set the system prompt (no text clears it)"),
    SlashCommand("retry", "", "Regenerate the last reply"),
    SlashCommand("edit", "", "Put the last message back into the input to edit and resend"),
    SlashCommand("gpu", "on|off|N", "Reload the model on the GPU, on the CPU, or with N layers"),
    SlashCommand("temp", "[X]", "Set the temperature (0 is greedy); alone: show it"),
    SlashCommand(
        "set",
        "[KEY [VALUE]]",
        "Set a parameter ("
        + ", ".join([*SAMPLING_KEYS, "repeat_guard"])
        + "); /set KEY shows it, /set alone lists them all",
    ),
    SlashCommand("settings", "", "Edit the system prompt and parameters in a form"),
    SlashCommand(
        "model",
        "[PATH]",
        "Load another model, picked from those found (or a file); keeps the conversation",
    ),
    SlashCommand(
        "schema",
        "@FILE.json|SCHEMA|off",
        "Constrain the next replies to JSON matching a schema (off: free text again)",
    ),
    SlashCommand(
        "prompt",
        "NAME|off",
        "Use a saved prompt: its system text, sampling, schema and template",
    ),
    SlashCommand("compact", "", "Summarise the oldest turns to free the context (kept in history)"),
    SlashCommand("read", "PATH", "Attach a text file to the next message (@path does too)"),
    SlashCommand("history", "", "Show or hide the history sidebar"),
    SlashCommand("search", "[TEXT]", "Search every stored conversation"),
    SlashCommand("rename", "TITLE", "Rename this conversation in the history"),
    SlashCommand("theme", "NAME", "Switch the theme (remembered)"),
    SlashCommand("copy", "[code]", "Copy the last reply, or its last code block"),
    SlashCommand("quit", "", "Quit (also /exit, /bye)"),
)
BY_NAME = {command.name: command for command in COMMANDS}
ALIASES = {"exit": "quit", "bye": "quit"}
"""Other names of commands (what users of other chat clients type)."""


@dataclass(frozen=True)
class ParsedCommand:
    """A slash command and the text after it."""

    command: SlashCommand
    arg: str


def is_command(text: str) -> bool:
    """Whether the input is a slash command (``//`` escapes a leading slash)."""
    return text.startswith("/") and not text.startswith("//")


def parse(text: str) -> ParsedCommand:
    """Parse ``/name rest``.

    Raises:
        UsageError: Unknown command (the message suggests the closest ones).
    """
    name, _, arg = text.strip()[1:].partition(" ")
    command = BY_NAME.get(ALIASES.get(name.lower(), name.lower()))
    if command is None:
        close = complete("/" + name[:2]) if name else []
        hint = f"; did you mean {', '.join(close)}?" if close else "; /help lists them"
        raise UsageError(f"unknown command /{name}{hint}")
    return ParsedCommand(command, arg.strip())


def complete(prefix: str) -> list[str]:
    """Commands (as ``/name``) that start with what was typed so far."""
    if not prefix.startswith("/") or " " in prefix:
        return []
    word = prefix[1:].lower()
    return [f"/{c.name}" for c in COMMANDS if c.name.startswith(word)]


def _setting_key(key: str) -> str:
    key = key.lower().replace("-", "_")
    return "temperature" if key == "temp" else key


def current_settings(sampling: Sampling, guard: RepeatGuard) -> list[tuple[str, str]]:
    """Every parameter ``/set`` takes, with its current value as ``/set`` spells it."""
    values = sampling.model_dump()
    rows = [(key, "random" if values[key] is None else str(values[key])) for key in SAMPLING_KEYS]
    return [*rows, ("repeat_guard", "on" if guard.enabled else "off")]


def current_setting(sampling: Sampling, guard: RepeatGuard, key: str) -> tuple[str, str]:
    """``/set KEY`` (and ``/temp``): the parameter's name and current value.

    Raises:
        UsageError: Unknown key.
    """
    wanted = _setting_key(key)
    for name, value in current_settings(sampling, guard):
        if name == wanted:
            return name, value
    raise UsageError(
        f"unknown parameter {wanted!r}; one of: {', '.join(SAMPLING_KEYS)}, repeat_guard"
    )


def apply_setting(
    sampling: Sampling, guard: RepeatGuard, key: str, value: str
) -> tuple[Sampling, RepeatGuard]:
    """Apply ``/set KEY VALUE`` to copies of the parameters.

    Raises:
        UsageError: Unknown key or invalid value.
    """
    key = _setting_key(key)
    if key == "repeat_guard":
        flag = _parse_bool(value)
        return sampling, guard.model_copy(update={"enabled": flag})
    if key not in SAMPLING_KEYS:
        raise UsageError(
            f"unknown parameter {key!r}; one of: {', '.join(SAMPLING_KEYS)}, repeat_guard"
        )
    parsed: Any = None if key == "seed" and value.lower() in ("", "none", "random") else value
    try:
        updated = Sampling.model_validate({**sampling.model_dump(), key: parsed})
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc)) from None
    return updated, guard


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise UsageError(f"expected on or off, not {value!r}")


def parse_gpu(arg: str) -> bool | int:
    """``/gpu on|off|N``: True, False, or a layer count.

    Raises:
        UsageError: Anything else.
    """
    lowered = arg.strip().lower()
    if lowered in ("on", "off", "true", "false", "yes", "no"):
        return _parse_bool(lowered)
    try:
        layers = int(lowered)
    except ValueError:
        raise UsageError("usage: /gpu on|off|N") from None
    if layers < 0:
        raise UsageError("usage: /gpu on|off|N (N is 0 or more)")
    return layers


_FENCED = re.compile(r"^([ \t]*)(```|~~~)[^\n]*\n(.*?)^\1\2[ \t]*$", re.MULTILINE | re.DOTALL)


def code_blocks(markdown: str) -> list[str]:
    """The contents of the fenced code blocks in a Markdown text, in order."""
    return [match.group(3).rstrip("\n") for match in _FENCED.finditer(markdown)]
