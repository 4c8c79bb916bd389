"""The history file and what can go wrong with it: where it lives, the errors, and moving
an unreadable file out of the way (it is renamed, never deleted)."""

from __future__ import annotations

import sqlite3
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


# What the sqlite3 module raises besides sqlite3.Error: a Python int SQLite cannot hold,
# and a str that is not valid Unicode. The store turns all three into its own errors.
DRIVER_ERRORS = (sqlite3.Error, OverflowError, UnicodeEncodeError)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def translate(exc: Exception, path: Path) -> StoreError:
    """The store's own error for one of :data:`DRIVER_ERRORS` on the file at ``path``."""
    if isinstance(exc, OverflowError):
        return Unstorable(f"a number is out of the history database's range: {exc}")
    if isinstance(exc, UnicodeEncodeError):
        return Unstorable(
            "text that is not valid Unicode (a lone surrogate) cannot go into the history"
        )
    if _is_corrupt(exc):
        return CorruptStore(path, str(exc))
    return StoreError(f"history database {path}: {exc}")


def _is_corrupt(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    message = str(exc)
    return "malformed" in message or "not a database" in message
