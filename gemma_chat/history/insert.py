"""Writing a whole conversation at once: what an import stores."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from gemma_chat.errors import UsageError
from gemma_chat.history import ids
from gemma_chat.history.records import (
    MESSAGE_INSERT,
    ConversationRecord,
    MessageRecord,
    dumps,
    message_values,
)
from gemma_chat.sanitize import one_line


def insert_conversation(
    conn: sqlite3.Connection, record: ConversationRecord, messages: list[MessageRecord]
) -> int:
    """Store a whole conversation as given, inside the caller's write transaction.

    The id is kept when it was never used in this store, so an export imported into
    a new store is the same conversation under the same number. ``reply_to`` and
    ``replaced_by`` are given as positions in ``messages`` and become the new row ids.

    Returns:
        The id it was stored under.

    Raises:
        UsageError: A conversation with the same uuid is already stored.
    """
    clash = conn.execute("SELECT id FROM conversations WHERE uuid = ?", (record.uuid,)).fetchone()
    if clash is not None:
        raise UsageError(
            f"conversation {one_line(record.uuid, 60)} is already in the history as {clash['id']}"
        )
    new_id = ids.keep_or_next(conn, record.id)
    conn.execute(
        "INSERT INTO conversations (id, uuid, title, system, params, created_at, "
        "updated_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id,
            record.uuid,
            record.title,
            record.system,
            dumps(record.params),
            record.created_at,
            record.updated_at,
            record.origin,
        ),
    )
    row_ids: list[int] = []
    for seq, message in enumerate(messages):
        reply_to = message.reply_to
        if reply_to is not None:
            reply_to = row_ids[reply_to] if 0 <= reply_to < len(row_ids) else None
        values = message_values(replace(message, reply_to=reply_to, replaced_by=None))
        cursor = conn.execute(MESSAGE_INSERT, (new_id, seq, *values))
        row_ids.append(int(cursor.lastrowid or 0))
    # A message is replaced by a later one: link them once every row has its id.
    for row_id, message in zip(row_ids, messages, strict=True):
        by = message.replaced_by
        if by is not None and 0 <= by < len(row_ids) and row_ids[by] != row_id:
            conn.execute("UPDATE messages SET replaced_by = ? WHERE id = ?", (row_ids[by], row_id))
    return new_id
