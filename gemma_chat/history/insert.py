"""Writing messages: one appended to a conversation, or a whole conversation at once
(what an import stores)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from gemma_chat.errors import UsageError
from gemma_chat.history import ids
from gemma_chat.history.problems import NotFound
from gemma_chat.history.records import (
    AFTER_ACTIVE,
    MESSAGE_INSERT,
    ConversationRecord,
    MessageRecord,
    dumps,
    message_values,
    now,
    title_from,
)
from gemma_chat.sanitize import one_line


def insert_conversation(
    conn: sqlite3.Connection, record: ConversationRecord, messages: list[MessageRecord]
) -> int:
    """Store a whole conversation as given, inside the caller's write transaction.

    The id is kept when it was never used in this store, so an export imported into
    a new store is the same conversation under the same number. ``reply_to``,
    ``parent_id`` and the record's ``active_id`` are given as positions in ``messages``
    and become the new row ids (the caller has checked they form a tree).

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
        values = message_values(replace(message, reply_to=reply_to, parent_id=None))
        cursor = conn.execute(MESSAGE_INSERT, (new_id, seq, *values))
        row_ids.append(int(cursor.lastrowid or 0))
    # A parent may come after its child in a migrated history: link once all have ids.
    links = [
        (row_ids[message.parent_id], row_id)
        for row_id, message in zip(row_ids, messages, strict=True)
        if message.parent_id is not None and 0 <= message.parent_id < len(row_ids)
    ]
    conn.executemany("UPDATE messages SET parent_id = ? WHERE id = ?", links)
    active = record.active_id
    if active is not None and 0 <= active < len(row_ids):
        conn.execute(
            "UPDATE conversations SET active_id = ? WHERE id = ?", (row_ids[active], new_id)
        )
    return new_id


def append_message(
    conn: sqlite3.Connection, conversation_id: int, message: MessageRecord
) -> MessageRecord:
    """Append one message after the last, inside the caller's write transaction (the
    first user message titles an untitled conversation).

    Returns:
        The message with its id and position.

    Raises:
        NotFound: No conversation has that id.
    """
    row = conn.execute(
        "SELECT title, active_id, (SELECT coalesce(max(seq) + 1, 0) FROM messages "
        "WHERE conversation_id = ?) AS next FROM conversations WHERE id = ?",
        (conversation_id, conversation_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"no conversation {conversation_id} in the history")
    parent = message.parent_id
    if parent == AFTER_ACTIVE:
        parent = row["active_id"]
    elif parent is not None and not in_conversation(conn, conversation_id, parent):
        raise NotFound(f"no message {parent} in conversation {conversation_id}")
    message = replace(message, parent_id=parent)
    seq = int(row["next"])
    cursor = conn.execute(MESSAGE_INSERT, (conversation_id, seq, *message_values(message)))
    added = int(cursor.lastrowid or 0)
    if not row["title"] and message.role == "user":
        conn.execute(
            "UPDATE conversations SET title = ? WHERE id = ?",
            (title_from(message.text), conversation_id),
        )
    # The branch a message is added to is the one being viewed.
    conn.execute(
        "UPDATE conversations SET updated_at = ?, active_id = ? WHERE id = ?",
        (now(), added, conversation_id),
    )
    return replace(message, id=added, seq=seq)


def in_conversation(conn: sqlite3.Connection, conversation_id: int, message_id: int) -> bool:
    """Whether ``message_id`` is a message of that conversation."""
    row = conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND conversation_id = ?",
        (message_id, conversation_id),
    ).fetchone()
    return row is not None
