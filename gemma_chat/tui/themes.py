"""Theme files: validate them and map each one onto a Textual ``Theme``.

The shipped themes live in the repository's ``themes/`` folder, installed as the
``gemma_chat.themes`` package; users add more as ``*.toml`` files in a themes folder
under the config directory. :func:`load_themes` never raises for a bad file: it returns
what loaded and what failed, and the app registers the first and reports the second once
(:func:`failure_message`). Only ``textual.theme`` and ``textual.color`` are imported here,
so this module stays free of widgets and the App.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from textual.color import Color, ColorParseError
from textual.theme import Theme

from gemma_chat.config.plain_errors import plain_message
from gemma_chat.files import read_regular_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BUILTIN_THEME_PACKAGE = "gemma_chat.themes"
"""The package that holds the shipped ``*.toml`` theme files."""
DEFAULT_THEME = "gemma-dark"
"""The theme used when none is chosen, or when the chosen one cannot be loaded."""

# Textual's text-style flags (textual.css.constants.VALID_STYLE_FLAGS), copied so this
# module does not import Textual's CSS machinery.
_STYLE_FLAGS = frozenset(
    {
        "b",
        "blink",
        "bold",
        "dim",
        "i",
        "italic",
        "none",
        "not",
        "o",
        "overline",
        "reverse",
        "strike",
        "u",
        "underline",
        "uu",
    }
)
# Colour variables may also take these, as Textual's own defaults do.
_COLOR_KEYWORDS = frozenset({"auto", "initial"})
# A colour variable: a colour, then an optional opacity ("#6E9BFF 35%").
_COLOR_VALUE = re.compile(r"(?P<color>.+?)(?:\s+(?P<opacity>\d+(?:\.\d+)?)%)?")
_COLOR_HINT = "use #rrggbb, rgb(...), hsl(...) or a colour name"
_MAX_ERRORS_SHOWN = 3
THEME_LIMIT = 256 * 1024
"""The largest theme file read: a real one is about 1 KiB."""


def _color_error(key: str, value: str) -> PydanticCustomError:
    return PydanticCustomError(
        "theme_color",
        "{key} = {value} is not a colour ({hint})",
        {"key": key, "value": repr(value), "hint": _COLOR_HINT},
    )


def _check_color(key: str, value: str) -> str:
    try:
        Color.parse(value)
    except ColorParseError:
        raise _color_error(key, value) from None
    return value


def _check_variable(key: str, value: str) -> str:
    """Check one ``[variables]`` value the way Textual's stylesheet will read it.

    A bad value here would only surface as a stylesheet error when the theme is applied,
    so it is caught at load time instead. Keys with a ``style`` part (``link-style``,
    ``block-cursor-text-style``) take text-style flags; every other key takes a colour,
    optionally followed by an opacity such as ``35%``.
    """
    if "style" in key.split("-"):
        words = value.split()
        if not words or any(word not in _STYLE_FLAGS for word in words):
            raise PydanticCustomError(
                "theme_style",
                "{key} = {value} is not a text style (use words like bold, italic, none)",
                {"key": key, "value": repr(value)},
            )
        return value
    match = _COLOR_VALUE.fullmatch(value.strip())
    if match is None or float(match["opacity"] or 0) > 100:
        raise _color_error(key, value)
    color = match["color"]
    if color not in _COLOR_KEYWORDS:
        try:
            Color.parse(color)
        except ColorParseError:
            raise _color_error(key, value) from None
    return value


class ThemeFile(BaseModel):
    """The contents of one theme file; the keys are ``textual.theme.Theme`` fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """The theme's name, used by ``/theme``, ``--theme`` and the config (no spaces)."""
    primary: str
    """The main colour: the user's messages, focus borders and the cursor."""
    secondary: str | None = None
    """The second colour: the model's replies."""
    accent: str | None = None
    """Highlights: footer keys and code keywords."""
    foreground: str | None = None
    """The default text colour."""
    background: str | None = None
    """The screen background."""
    surface: str | None = None
    """The background of widgets that sit on the screen."""
    panel: str | None = None
    """A background that stands out from the surface: the footer, panels."""
    boost: str | None = None
    """A translucent colour layered on top of others to lift them."""
    warning: str | None = None
    """Warnings."""
    error: str | None = None
    """Errors."""
    success: str | None = None
    """Success."""
    dark: bool = True
    """Whether this is a dark theme; Textual derives shades and syntax colours from it."""
    variables: dict[str, str] = Field(default_factory=dict)
    """Textual theme variables (``footer-key-foreground``, ...), name to CSS value."""

    @field_validator(
        "primary",
        "secondary",
        "accent",
        "foreground",
        "background",
        "surface",
        "panel",
        "boost",
        "warning",
        "error",
        "success",
    )
    @classmethod
    def _valid_color(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_color(info.field_name, value)

    @field_validator("variables")
    @classmethod
    def _valid_variables(cls, variables: dict[str, str]) -> dict[str, str]:
        for key, value in variables.items():
            _check_variable(key, value)
        return variables

    def to_theme(self) -> Theme:
        """Build the Textual theme this file describes.

        Returns:
            A ``textual.theme.Theme`` ready for ``App.register_theme``.
        """
        fields = self.model_dump(exclude_none=True)
        fields["variables"] = dict(self.variables)
        return Theme(**fields)


@dataclass(frozen=True)
class ThemeFailure:
    """A theme file that could not be loaded."""

    path: Path
    """The file (or themes folder) that failed."""
    reason: str
    """What is wrong with it, in one line."""


def _describe(error: ValidationError) -> str:
    """One line for a validation error, naming each bad key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        kind = item["type"]
        if kind.startswith("theme_"):
            parts.append(item["msg"])
        elif kind == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        elif kind == "missing":
            parts.append(f"missing required key {key!r}")
        elif kind == "string_pattern_mismatch":
            parts.append(f"{key} = {item['input']!r}: use letters, digits, '-', '_' or '.'")
        else:
            parts.append(f"{key}: {plain_message(item)}")
    shown = "; ".join(parts[:_MAX_ERRORS_SHOWN])
    hidden = len(parts) - _MAX_ERRORS_SHOWN
    return f"{shown} (and {hidden} more)" if hidden > 0 else shown


def _load_one(source: Traversable, label: Path) -> Theme | ThemeFailure:
    """Read, parse and validate one theme file, never raising for a bad one."""
    try:
        # A user's file is read only if regular and small (never a FIFO or a 5 GB file).
        raw = read_regular_file(source, THEME_LIMIT) if isinstance(source, Path) else None
        data = tomllib.loads((raw or source.read_bytes()).decode("utf-8"))
    except OSError as exc:
        return ThemeFailure(label, f"cannot read the file: {exc.strerror or exc}")
    except UnicodeDecodeError:
        return ThemeFailure(label, "not a UTF-8 text file")
    except tomllib.TOMLDecodeError as exc:
        return ThemeFailure(label, f"invalid TOML: {exc}")
    except RecursionError:
        return ThemeFailure(label, "invalid TOML: nested too deeply")
    try:
        return ThemeFile.model_validate(data).to_theme()
    except ValidationError as exc:
        return ThemeFailure(label, _describe(exc))


def _shipped_files() -> Iterator[tuple[Traversable, Path]]:
    folder = resources.files(BUILTIN_THEME_PACKAGE)
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".toml") and entry.is_file():
            yield entry, Path(str(entry))


def _user_files(user_dir: Path) -> Iterator[tuple[Traversable, Path]]:
    for path in sorted(user_dir.iterdir()):
        if path.suffix.lower() == ".toml" and path.is_file():
            yield path, path


def load_themes(user_dir: Path | None) -> tuple[list[Theme], list[ThemeFailure]]:
    """Load the shipped themes, then the user's.

    The user's ``*.toml`` files are read in name order; any other file is ignored. A user
    theme with the name of a shipped theme replaces it; two user files with the same
    name are an error in the second.

    Args:
        user_dir: The user's themes folder; ``None`` or a missing folder means none.

    Returns:
        ``(loaded, failed)``: the themes that loaded, shipped ones first, and one
        :class:`ThemeFailure` per file that did not.
    """
    themes: dict[str, Theme] = {}
    failures: list[ThemeFailure] = []
    for source, label in _shipped_files():
        result = _load_one(source, label)
        if isinstance(result, ThemeFailure):
            failures.append(result)
        else:
            themes[result.name] = result

    user_names: dict[str, Path] = {}
    try:
        user_files = list(_user_files(user_dir)) if user_dir and user_dir.is_dir() else []
    except OSError as exc:
        failures.append(ThemeFailure(user_dir, f"cannot list the folder: {exc.strerror}"))
        user_files = []
    for source, label in user_files:
        result = _load_one(source, label)
        if isinstance(result, ThemeFailure):
            failures.append(result)
        elif result.name in user_names:
            first = user_names[result.name].name
            failures.append(ThemeFailure(label, f"theme {result.name!r} is already in {first}"))
        else:
            user_names[result.name] = label
            themes[result.name] = result
    return list(themes.values()), failures


def failure_message(failures: Iterable[ThemeFailure]) -> str:
    """The text of the one notification that reports every bad theme file.

    Args:
        failures: The failures from :func:`load_themes`.

    Returns:
        One line per bad file, under a heading; an empty string when there are none.
    """
    failures = list(failures)
    if not failures:
        return ""
    count = len(failures)
    heading = "1 theme file was skipped:" if count == 1 else f"{count} theme files were skipped:"
    lines = [f"• {failure.path.name}: {failure.reason}" for failure in failures]
    return "\n".join([heading, *lines])
