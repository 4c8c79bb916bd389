"""Reading and changing the tree of a conversation's messages: a branch, every message,
the tree's shape, a message's versions, the branch viewed, and deleting messages.

A mixin of :class:`gemma_chat.history.store.HistoryStore`, which gives it its locked
reads and writes; the SQL is in :mod:`gemma_chat.history.tree`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager

from gemma_chat.history import tree
from gemma_chat.history.insert import in_conversation
from gemma_chat.history.problems import NotFound
from gemma_chat.history.records import MessageRecord, message_from_row


class TreeQueries:
    """The message-tree methods of the store (see the module docstring)."""

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # the store's

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # the store's

    def delete_messages(self, conversation_id: int, ids: Iterable[int]) -> int:
        """Delete messages of a conversation, each with everything after it on every
        branch. The branch viewed, if it lost its end, ends where they began.

        Returns:
            How many were deleted.
        """
        with self._write() as conn:
            return tree.delete_below(conn, conversation_id, ids)

    def delete_unanswered(self, conversation_id: int, ids: Iterable[int]) -> list[int]:
        """Delete those of ``ids`` that nothing follows yet (a question whose reply
        failed); one another writer has continued meanwhile stays.

        Returns:
            The ids deleted.
        """
        with self._write() as conn:
            return tree.delete_unanswered(conn, conversation_id, ids)

    def messages(self, conversation_id: int, *, leaf: int | None = None) -> list[MessageRecord]:
        """One branch, from the first message to ``leaf`` (default: the branch last
        viewed). Empty when ``leaf`` is not a message of the conversation."""
        with self._read() as conn:
            if leaf is None:
                leaf = tree.active_leaf(conn, conversation_id)
            rows = [] if leaf is None else tree.branch_to(conn, conversation_id, leaf)
        return [message_from_row(row) for row in rows]

    def all_messages(self, conversation_id: int) -> list[MessageRecord]:
        """Every message on every branch, in the order they were written (each names
        its parent: exports, ``history show --tree``)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [message_from_row(row) for row in rows]

    def links(self, conversation_id: int) -> list[tuple[int, int | None, str]]:
        """``(id, parent_id, role)`` of every message, oldest first: the tree's shape."""
        query = "SELECT id, parent_id, role FROM messages WHERE conversation_id = ? ORDER BY seq"
        with self._read() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(query, (conversation_id,))]

    def branch_count(self, conversation_id: int) -> int:
        """How many branches a conversation has: the messages nothing follows (0 when
        it has none)."""
        query = (
            "SELECT count(*) FROM messages m WHERE m.conversation_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM messages k WHERE k.conversation_id = m.conversation_id "
            "AND k.parent_id = m.id)"
        )
        with self._read() as conn:
            return int(conn.execute(query, (conversation_id,)).fetchone()[0])

    def siblings(self, conversation_id: int, message_id: int) -> list[MessageRecord]:
        """The versions of ``message_id`` (edits of a question, regenerated replies, or
        whatever else another writer added there): the messages with its parent, itself
        included, oldest first.

        Raises:
            NotFound: It is not a message of that conversation.
        """
        with self._read() as conn:
            row = conn.execute(
                "SELECT parent_id FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id} in conversation {conversation_id}")
            rows = tree.children(conn, conversation_id, row["parent_id"])
        return [message_from_row(r) for r in rows]

    def view(self, conversation_id: int, message_id: int) -> list[MessageRecord]:
        """Make the branch through ``message_id`` the one viewed (to its latest end) and
        return it: switching branches, opening a search hit. Resuming opens it.

        Raises:
            NotFound: It is not a message of that conversation.
        """
        with self._write() as conn:
            if not in_conversation(conn, conversation_id, message_id):
                raise NotFound(f"no message {message_id} in conversation {conversation_id}")
            leaf = tree.latest_leaf(conn, conversation_id, message_id)
            conn.execute(
                "UPDATE conversations SET active_id = ? WHERE id = ?", (leaf, conversation_id)
            )
            rows = tree.branch_to(conn, conversation_id, leaf)
        return [message_from_row(row) for row in rows]
