"""The one way the history opens SQLite: every connection gets the same durability
settings, and they are read back, not assumed.

WAL with ``synchronous=FULL`` is what makes a committed message survive a power cut
(``NORMAL`` in WAL mode only survives a process crash, which ``kill -9`` tests cannot tell
apart), so a connection that does not end up in that state is refused.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gemma_chat.history.problems import StoreError

BUSY_TIMEOUT_MS = 10_000
SYNCHRONOUS_FULL = 2
"""``PRAGMA synchronous`` reads back as a number: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA."""


def connect(path: Path) -> sqlite3.Connection:
    """Open the history database at ``path`` in autocommit mode, configured.

    Raises:
        StoreError: It cannot be opened, or refuses WAL mode.
        sqlite3.Error: Configuring it failed (the caller names a damaged file).
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the history database {path}: {exc}") from None
    try:
        configure(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def configure(conn: sqlite3.Connection, path: Path) -> None:
    """Set the pragmas every history connection runs with, and check they took."""
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"the history database {path} cannot use WAL mode ({mode})")
    conn.execute("PRAGMA synchronous = FULL")
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    if level != SYNCHRONOUS_FULL:
        raise StoreError(f"the history database {path} cannot use synchronous=FULL ({level})")
    conn.execute("PRAGMA foreign_keys = ON")
    # Reading the schema makes SQLite parse the header: a file that is not a
    # database fails here, not at the first user action.
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
