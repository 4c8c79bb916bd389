"""Reading the TOML config file into :class:`~gemma_chat.config.settings.Settings`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gemma_chat import paths
from gemma_chat.config.plain_errors import plain_message
from gemma_chat.config.settings import Settings
from gemma_chat.errors import UsageError
from gemma_chat.files import read_regular_file
from gemma_chat.sanitize import one_line
from gemma_chat.units import MIB

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_LIMIT = MIB
"""The largest config file read: a real one is a few KiB."""


def load_config(path: Path | None = None) -> dict[str, Any]:
    """Read the config file as a plain dict, validated against :class:`Settings`.

    Args:
        path: The file to read; defaults to :func:`gemma_chat.paths.config_file`.

    Returns:
        The settings the file sets (empty when the file does not exist).

    Raises:
        UsageError: The file is not a regular file of at most :data:`CONFIG_LIMIT`
            bytes, is not valid TOML, or sets an unknown or invalid value.
    """
    path = path or paths.config_file()
    try:
        # Only a regular file, and a bounded read: /dev/zero or a FIFO would never end.
        raw = read_regular_file(path, CONFIG_LIMIT)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    except RecursionError:  # `a = [[[[...]]]]` thousands deep: tomllib recurses per level
        raise UsageError(f"config file {path} is nested too deeply") from None
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        # `from None`: pydantic's own text repeats the input, which may be a secret.
        raise UsageError(f"config file {path}: {describe_validation_error(exc)}") from None
    model = data.get("model")
    if data.get("backend") == "openai":
        pass  # the model is an id on the server, never a file
    elif isinstance(model, str):
        if not model.strip():
            data.pop("model")
        elif model != "demo" and (paths.looks_like_path(model) or model.lower().endswith(".gguf")):
            # A relative model path in the config is relative to the config file; a bare
            # name (a file stem or an alias) is resolved later, like --model NAME. A bare
            # file name ending .gguf names the file beside the config, as it always has.
            data["model"] = str((path.parent / Path(model).expanduser()).resolve())
    models_dir = data.get("models_dir")
    if isinstance(models_dir, str) and models_dir.strip():
        # Like model paths: relative to the config file, not to wherever gemma-chat runs.
        data["models_dir"] = str((path.parent / Path(models_dir).expanduser()).resolve())
    return data


_MAX_KEY_SHOWN = 80

# Settings keys and the command-line options that set them, for error messages.
OPTION_NAMES = {
    "backend": "--backend",
    "base_url": "--base-url",
    "profile": "--remote",
    "ctx": "--ctx",
    "threads": "--threads",
    "gpu_layers": "--gpu-layers",
    "sampling.max_tokens": "--max-tokens",
    "sampling.temperature": "--temperature",
    "sampling.top_p": "--top-p",
    "sampling.top_k": "--top-k",
    "sampling.min_p": "--min-p",
    "sampling.repeat_penalty": "--repeat-penalty",
    "sampling.seed": "--seed",
}


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's error into one line: ``key.path (--option): message``."""
    first = exc.errors()[0]
    # A union (gpu_layers: int | "all" | "auto") reports the branch in the location; drop it.
    branches = ("int", "constrained-int", "literal[")
    loc = [str(part) for part in first["loc"] if not str(part).startswith(branches)]
    # A key is the user's text: one line, shown visibly, and not too long to read.
    where = one_line(".".join(loc)) or "value"
    if len(where) > _MAX_KEY_SHOWN:
        where = where[: _MAX_KEY_SHOWN - 1] + "…"
    if where in OPTION_NAMES:
        where = f"{where} ({OPTION_NAMES[where]})"
    if where.startswith("gpu_layers"):
        return f"{where}: takes a number of layers (0 or more), 'all' or 'auto'"
    more = len({tuple(err["loc"][:1]) for err in exc.errors()}) - 1
    suffix = f" (and {more} more)" if more else ""
    # In plain words (our own validators' messages are whole sentences already).
    return f"{where}: {plain_message(first)}{suffix}"
