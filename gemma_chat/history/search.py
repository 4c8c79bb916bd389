"""Full-text search over every stored message (SQLite FTS5, ranked by bm25)."""

from __future__ import annotations

import sqlite3

from gemma_chat.errors import UsageError
from gemma_chat.history.records import SNIPPET_CLOSE, SNIPPET_OPEN, SearchHit, hit_from_row

_INT64_MAX = 2**63 - 1


def fts_query(text: str) -> str:
    """An FTS5 query for what a user typed: every word must appear, each as a prefix.

    Words are quoted, so FTS5 operators and punctuation in the text are searched for,
    never interpreted.

    Raises:
        UsageError: There is no word in ``text``.
    """
    words = [word for word in text.split() if any(ch.isalnum() for ch in word)]
    if not words:
        raise UsageError("give a word to search for")
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def search_messages(conn: sqlite3.Connection, query: str, limit: int | None) -> list[SearchHit]:
    """The messages matching an :func:`fts_query`, best matches first, each with a
    snippet around the match and its conversation's title. Every branch is searched (a
    hit opens the branch it is on)."""
    rows = conn.execute(
        "SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, c.title, "
        f"snippet(messages_fts, 0, '{SNIPPET_OPEN}', '{SNIPPET_CLOSE}', '…', 12) "
        "AS snippet FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
        "JOIN conversations c ON c.id = m.conversation_id "
        "WHERE messages_fts MATCH ? "
        "ORDER BY bm25(messages_fts), m.id DESC LIMIT ?",
        (query, sql_limit(limit)),
    ).fetchall()
    return [hit_from_row(row) for row in rows]


def sql_limit(limit: int | None) -> int:
    """A LIMIT SQLite can take: none (-1) for None or a number past its range."""
    return -1 if limit is None or limit > _INT64_MAX else limit
