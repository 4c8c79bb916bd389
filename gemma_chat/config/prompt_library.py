"""The saved prompts: the shipped ones, the prompts folder beside the config, and
``[prompts.NAME]`` tables in the config.

Like themes, a bad prompt file never stops the rest: :func:`load_prompts` returns what
loaded and what failed, and the caller reports the failures once, by file name. Later
sources replace earlier ones of the same name: shipped, then the folder's files (in
name order), then the config's tables.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from gemma_chat import paths
from gemma_chat.config.config_file import describe_validation_error
from gemma_chat.config.settings import SavedPrompt
from gemma_chat.errors import UsageError
from gemma_chat.files import read_regular_file
from gemma_chat.structured.constraint import OutputConstraint, check_schema, parse_schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROMPT_LIMIT = 256 * 1024
"""The largest prompt file read: a real one is well under 4 KiB."""
SHIPPED_PACKAGE = "gemma_chat.config"
"""The package whose ``prompts/`` folder holds the shipped prompts."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class PromptEntry:
    """A saved prompt and where it came from.

    Attributes:
        name: What ``-p`` and ``/prompt`` take.
        prompt: Its contents.
        source: ``shipped``, ``config`` or the file's path.
        base: The folder a ``@file.json`` schema is relative to.
    """

    name: str
    prompt: SavedPrompt
    source: str
    base: Path | None = None

    def constraint(self) -> OutputConstraint | None:
        """The prompt's schema as a constraint (None without one).

        Raises:
            UsageError: The schema cannot be read or is not a JSON Schema.
        """
        schema = self.prompt.schema_
        try:
            if isinstance(schema, dict):
                check_schema(schema)
                return OutputConstraint(schema=schema, label=f"prompt {self.name}")
            if isinstance(schema, str):
                return parse_schema(schema, self.base)
        except UsageError as exc:
            raise UsageError(f"prompt {self.name!r}: {exc}") from None
        return None


@dataclass(frozen=True)
class PromptFailure:
    """A prompt file that could not be loaded."""

    path: Path
    reason: str


def prompts_dir() -> Path:
    """The user's prompts folder: ``prompts/`` beside the config file."""
    return paths.config_dir() / "prompts"


def load_prompts(
    configured: dict[str, SavedPrompt] | None = None, folder: Path | None = None
) -> tuple[dict[str, PromptEntry], list[PromptFailure]]:
    """Every saved prompt by name, and the files that failed to load.

    Args:
        configured: The config's ``[prompts.NAME]`` tables (they win).
        folder: The user's prompts folder (default :func:`prompts_dir`); a missing one
            holds none.
    """
    found: dict[str, PromptEntry] = {}
    failures: list[PromptFailure] = []
    shipped = resources.files(SHIPPED_PACKAGE) / "prompts"
    for entry in sorted(shipped.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".toml"):
            label = Path(str(entry))
            _add(found, failures, label.stem, entry.read_bytes(), label, "shipped")
    folder = prompts_dir() if folder is None else folder
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".toml")
    except FileNotFoundError:
        files = []
    except OSError as exc:
        failures.append(PromptFailure(folder, f"cannot list the folder: {exc.strerror}"))
        files = []
    for path in files:
        try:
            raw = read_regular_file(path, PROMPT_LIMIT)
        except OSError as exc:
            failures.append(PromptFailure(path, f"cannot read the file: {exc.strerror or exc}"))
            continue
        _add(found, failures, path.stem, raw, path, str(path))
    for name, prompt in (configured or {}).items():
        found[name] = PromptEntry(name, prompt, "config", paths.config_dir())
    return found, failures


def _add(
    found: dict[str, PromptEntry],
    failures: list[PromptFailure],
    name: str,
    raw: bytes,
    path: Path,
    source: str,
) -> None:
    if not _NAME.fullmatch(name):
        failures.append(PromptFailure(path, "use letters, digits, '-', '_' or '.' in the name"))
        return
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        failures.append(PromptFailure(path, "not a UTF-8 text file"))
        return
    except tomllib.TOMLDecodeError as exc:
        failures.append(PromptFailure(path, f"invalid TOML: {exc}"))
        return
    except RecursionError:
        failures.append(PromptFailure(path, "invalid TOML: nested too deeply"))
        return
    try:
        prompt = SavedPrompt.model_validate(data)
    except ValidationError as exc:
        failures.append(PromptFailure(path, describe_validation_error(exc)))
        return
    found[name] = PromptEntry(name, prompt, source, path.parent)


def find_prompt(
    name: str, found: dict[str, PromptEntry], failures: list[PromptFailure]
) -> PromptEntry:
    """The prompt called ``name``.

    Raises:
        UsageError: There is none; a file of that name that failed says why.
    """
    if name in found:
        return found[name]
    for failure in failures:
        if failure.path.stem == name:
            raise UsageError(
                f"prompt {name!r} ({failure.path.name}) cannot be used: {failure.reason}"
            )
    known = ", ".join(sorted(found)) or "none"
    raise UsageError(f"no prompt named {name!r} (saved prompts: {known}; see: gemma-chat prompts)")


def failure_lines(failures: Iterable[PromptFailure]) -> list[str]:
    """One line per bad prompt file, naming it: what the CLI prints, once."""
    return [
        f"prompt file {failure.path.name} was skipped: {failure.reason}" for failure in failures
    ]
