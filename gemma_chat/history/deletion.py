"""Deleting messages by id, and what a deleted message had replaced (schema 4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def delete_ids(conn: sqlite3.Connection, conversation_id: int, ids: Iterable[int]) -> int:
    """Delete messages of one conversation by id, inside the caller's transaction. What
    each had replaced comes back on the path shown: nothing is lost.

    Returns:
        How many were deleted.
    """
    count = 0
    for message_id in ids:
        cursor = conn.execute(
            "DELETE FROM messages WHERE id = ? AND conversation_id = ?",
            (message_id, conversation_id),
        )
        count += cursor.rowcount
        conn.execute(
            "UPDATE messages SET replaced_by = NULL WHERE replaced_by = ? AND conversation_id = ?",
            (message_id, conversation_id),
        )
    return count


def with_replaced_ones(
    conn: sqlite3.Connection, conversation_id: int, ids: Iterable[int]
) -> list[int]:
    """The ids given plus every message they replaced, directly or through others."""
    found: list[int] = []
    todo = list(ids)
    while todo:
        message_id = todo.pop()
        if message_id in found:
            continue
        found.append(message_id)
        todo += [
            row[0]
            for row in conn.execute(
                "SELECT id FROM messages WHERE replaced_by = ? AND conversation_id = ?",
                (message_id, conversation_id),
            )
        ]
    return found
