"""The history file and what can go wrong with it: where it lives, the errors, and moving
an unreadable file out of the way (it is renamed, never deleted)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from gemma_chat import paths
from gemma_chat.errors import GemmaChatError, UsageError

STORE_FILE_NAME = "history.db"


def store_file() -> Path:
    """Where the history lives: ``<data dir>/history.db``."""
    return paths.data_dir() / STORE_FILE_NAME


class StoreError(GemmaChatError):
    """The history store cannot be used."""


class CorruptStore(StoreError):
    """The history file is not a readable SQLite database.

    Attributes:
        path: The file.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"the history database {path} is unreadable ({reason}). Nothing was changed; "
            "move it aside (kept, renamed) and start a new one with: "
            "gemma-chat history move-aside"
        )


class NotFound(UsageError):
    """No conversation has the given id."""


class Unstorable(StoreError, UsageError):
    """A value SQLite cannot hold: a number outside its 64-bit range, or text that is
    not valid Unicode (a lone surrogate). Bad input, so a usage error (exit 2)."""


def move_aside(path: Path | None = None) -> Path:
    """Rename a damaged history file (and its WAL and shared-memory files) out of the
    way, so the next start creates a new store. Nothing is deleted.

    Returns:
        The new name of the database file.

    Raises:
        StoreError: There is no file, or it cannot be renamed.
    """
    path = path or store_file()
    if not path.exists():
        raise StoreError(f"there is no history database at {path}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.unreadable-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.unreadable-{stamp}-{counter}")
    try:
        path.rename(target)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
    except OSError as exc:
        raise StoreError(f"cannot move {path} aside: {exc}") from None
    return target
