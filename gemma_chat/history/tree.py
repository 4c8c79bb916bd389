"""The conversation tree in SQL: a branch (root to leaf), a message's siblings, the
latest leaf under a message, and deleting a message with everything after it.

Each message names its parent (``parent_id``; NULL starts a branch from the start of the
conversation), and a conversation the last message of the branch last viewed
(``active_id``). These functions run inside the caller's read or write (see
:class:`gemma_chat.history.store.HistoryStore`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

MAX_DEPTH = 1_000_000
"""How many links a walk follows at most: a guard, since no write can make a cycle."""

_BRANCH = """
WITH RECURSIVE branch(id, depth) AS (
    SELECT id, 0 FROM messages WHERE id = ? AND conversation_id = ?
    UNION ALL
    SELECT m.parent_id, branch.depth + 1 FROM messages m JOIN branch ON m.id = branch.id
    WHERE m.parent_id IS NOT NULL AND branch.depth < ?
)
SELECT m.* FROM branch JOIN messages m ON m.id = branch.id ORDER BY branch.depth DESC
"""

_BELOW = """
WITH RECURSIVE below(id) AS (
    SELECT id FROM messages WHERE id = ? AND conversation_id = ?
    UNION
    SELECT m.id FROM messages m JOIN below ON m.parent_id = below.id
)
SELECT id FROM below
"""


def branch_to(conn: sqlite3.Connection, conversation_id: int, message_id: int) -> list[sqlite3.Row]:
    """The messages from the start of the conversation to ``message_id``, in order
    (empty when it is not a message of that conversation)."""
    return conn.execute(_BRANCH, (message_id, conversation_id, MAX_DEPTH)).fetchall()


def active_leaf(conn: sqlite3.Connection, conversation_id: int) -> int | None:
    """The last message of the branch last viewed (the latest written when that is
    unknown); None when the conversation has no message."""
    row = conn.execute(
        "SELECT c.active_id FROM conversations c JOIN messages m ON m.id = c.active_id "
        "WHERE c.id = ? AND m.conversation_id = c.id",
        (conversation_id,),
    ).fetchone()
    if row is not None:
        return int(row[0])
    row = conn.execute(
        "SELECT id FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
        (conversation_id,),
    ).fetchone()
    return None if row is None else int(row[0])


def children(
    conn: sqlite3.Connection, conversation_id: int, parent_id: int | None
) -> list[sqlite3.Row]:
    """The messages that follow ``parent_id`` (None: the first messages of branches
    from the start), in the order they were written."""
    return conn.execute(
        "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY seq",
        (conversation_id, parent_id),
    ).fetchall()


_NEWEST_BELOW = """
WITH RECURSIVE down(id, depth) AS (
    SELECT ?, 0
    UNION ALL
    SELECT (
        SELECT m.id FROM messages m WHERE m.conversation_id = ? AND m.parent_id = down.id
        ORDER BY m.seq DESC LIMIT 1
    ), down.depth + 1 FROM down WHERE down.id IS NOT NULL AND down.depth < ?
)
SELECT id FROM down WHERE id IS NOT NULL ORDER BY depth DESC LIMIT 1
"""


def latest_leaf(conn: sqlite3.Connection, conversation_id: int, message_id: int) -> int:
    """The end of the branch through ``message_id`` written last: from it, the newest
    child at every step (where a switch to it goes). One statement, however deep."""
    row = conn.execute(_NEWEST_BELOW, (message_id, conversation_id, MAX_DEPTH)).fetchone()
    return message_id if row is None else int(row[0])


def delete_unanswered(
    conn: sqlite3.Connection, conversation_id: int, ids: Iterable[int]
) -> list[int]:
    """Delete those of ``ids`` that nothing follows (the last first, so a chain of them
    goes whole); one that another writer has since continued stays, with what follows.
    The branch viewed, if it lost its end, ends at the parent.

    Returns:
        The ids deleted.
    """
    deleted: list[int] = []
    for message_id in reversed(list(ids)):
        row = conn.execute(
            "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.parent_id = messages.id)",
            (message_id, conversation_id),
        ).fetchone()
        if row is None:
            continue
        conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        conn.execute(
            "UPDATE conversations SET active_id = ? WHERE id = ? AND active_id = ?",
            (row["parent_id"], conversation_id, message_id),
        )
        deleted.append(message_id)
    return deleted


def delete_below(conn: sqlite3.Connection, conversation_id: int, ids: Iterable[int]) -> int:
    """Delete messages with every message after them on any branch. When the branch
    viewed loses its end, it ends at the parent of what was deleted.

    Returns:
        How many messages were deleted.
    """
    viewed = active_leaf(conn, conversation_id)
    on_branch = [] if viewed is None else branch_to(conn, conversation_id, viewed)
    gone: set[int] = set()
    for message_id in ids:
        gone.update(row[0] for row in conn.execute(_BELOW, (message_id, conversation_id)))
    if not gone:
        return 0
    conn.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in sorted(gone)])
    cut = next((row for row in on_branch if row["id"] in gone), None)
    if cut is not None:
        conn.execute(
            "UPDATE conversations SET active_id = ? WHERE id = ?",
            (cut["parent_id"], conversation_id),
        )
    return len(gone)
