"""Where gemma-chat keeps its files, from platformdirs, with environment overrides."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import PlatformDirs

_DIRS = PlatformDirs("gemma-chat", appauthor=False)


def looks_like_path(value: str) -> bool:
    """Whether ``--model``/``model =`` text names a file rather than a short name.

    The rule: it starts with ``~`` or ``.``, or it holds a path separator (``/``
    everywhere, plus ``\\`` on Windows: elsewhere a backslash is an ordinary file-name
    character). ``model.gguf`` alone is not a path by this rule: it may be a short name,
    looked up among the models found when no such file exists here.
    """
    separators = {sep for sep in (os.sep, os.altsep, "/") if sep}
    return value.startswith(("~", ".")) or any(sep in value for sep in separators)


def config_file() -> Path:
    """The TOML config file: ``$GEMMA_CHAT_CONFIG`` or ``<config dir>/config.toml``."""
    override = os.environ.get("GEMMA_CHAT_CONFIG")
    if override:
        return Path(override).expanduser()
    return Path(_DIRS.user_config_dir) / "config.toml"


def config_dir() -> Path:
    """The folder that holds the config file and the user's themes."""
    return config_file().parent


def cache_dir() -> Path:
    """Rebuildable files: the assembled demo model and model probe results.

    ``$GEMMA_CHAT_CACHE_DIR`` overrides the platformdirs location (tests use it).
    """
    override = os.environ.get("GEMMA_CHAT_CACHE_DIR")
    return Path(override).expanduser() if override else Path(_DIRS.user_cache_dir)


def data_dir() -> Path:
    """User data (history, downloaded models): ``$GEMMA_CHAT_DATA_DIR`` or platformdirs."""
    override = os.environ.get("GEMMA_CHAT_DATA_DIR")
    return Path(override).expanduser() if override else Path(_DIRS.user_data_dir)


def models_dir(configured: str | None = None) -> Path:
    """Where ``pull`` puts models and discovery looks first.

    Args:
        configured: The ``models_dir`` setting, which wins when set.

    Returns:
        ``configured``, else ``$GEMMA_CHAT_MODELS_DIR``, else ``<data dir>/models``.
    """
    chosen = configured or os.environ.get("GEMMA_CHAT_MODELS_DIR")
    return Path(chosen).expanduser() if chosen else data_dir() / "models"
