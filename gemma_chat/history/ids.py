"""Conversation ids: a counter that only goes up, and the id an import may keep."""

from __future__ import annotations

import sqlite3

from gemma_chat.history.problems import StoreError

ID_LIMIT = 2**53 - 1
"""The highest conversation id ever handed out: far from SQLite's 2**63 - 1, so adding
one never overflows, and exact in every JSON reader (a double holds it)."""
KEEP_ID_LIMIT = 2**31 - 1
"""An import keeps its id only up to here; a larger one gets the next id, so no file can
push the counter anywhere near :data:`ID_LIMIT`."""


def next_id(conn: sqlite3.Connection) -> int:
    """The next conversation id, counted up inside the caller's transaction.

    Raises:
        StoreError: Every id up to :data:`ID_LIMIT` is used (only a hand-edited file
            gets here).
    """
    counter = _counter(conn)
    if counter >= ID_LIMIT:
        # Only an import by an older gemma-chat (which kept any id) could push the
        # counter this far: carry on from the highest id in range instead of failing
        # every save from now on.
        counter = conn.execute(
            "SELECT coalesce(max(id), 0) FROM conversations WHERE id <= ?", (ID_LIMIT,)
        ).fetchone()[0]
    new_id = counter + 1
    if new_id > ID_LIMIT:
        raise StoreError(f"no conversation ids are left (the highest is {ID_LIMIT})")
    _set_counter(conn, new_id)
    return new_id


def keep_or_next(conn: sqlite3.Connection, wanted: int) -> int:
    """``wanted`` when this store never used it (above the counter, at most
    :data:`KEEP_ID_LIMIT`), else :func:`next_id`. Inside the caller's transaction."""
    if _counter(conn) < wanted <= KEEP_ID_LIMIT:
        _set_counter(conn, wanted)
        return wanted
    return next_id(conn)


def _counter(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM counters WHERE name = 'conversation'").fetchone()[0])


def _set_counter(conn: sqlite3.Connection, value: int) -> None:
    conn.execute("UPDATE counters SET value = ? WHERE name = 'conversation'", (value,))
