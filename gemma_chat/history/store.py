"""The conversation store: every conversation and message, in one SQLite file.

The file is ``history.db`` in the data directory (``$GEMMA_CHAT_DATA_DIR`` overrides it).
It is crash-safe by construction:

* WAL journal with ``synchronous=FULL``: a committed message survives ``kill -9`` and a
  power cut, and readers never block the writer;
* each message is one short ``BEGIN IMMEDIATE`` transaction, written as soon as it is
  complete (a user message when it is sent, a reply when it ends, partial replies
  included), so a crash loses at most the reply being generated;
* several processes may write at once: they queue on SQLite's lock (``busy_timeout``),
  each message takes the next free position inside its own transaction and names its
  parent, so two writers continuing one conversation each grow their own branch.
  Messages are only ever deleted by id, never by position, so one process cannot
  delete what another wrote.

A conversation is a tree (schema 5, :mod:`gemma_chat.history.tree`): editing a question
or regenerating a reply adds a sibling, and nothing is replaced.

A file that is not a database, or is damaged, raises :class:`CorruptStore`, which names
the file; :func:`move_aside` renames it (never deletes it) so a new store can start.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from gemma_chat.errors import UsageError
from gemma_chat.history import connection, ids, schema
from gemma_chat.history.insert import append_message, insert_conversation
from gemma_chat.history.problems import (
    DRIVER_ERRORS,
    CorruptStore,
    NotFound,
    StoreError,
    Unstorable,
    move_aside,
    store_file,
    translate,
)
from gemma_chat.history.records import (
    ConversationRecord,
    MessageRecord,
    SearchHit,
    conversation_from_row,
    dumps,
    now,
    title_from,
)
from gemma_chat.history.search import fts_query, search_messages, sql_limit
from gemma_chat.history.tree_queries import TreeQueries
from gemma_chat.history.turns import to_conversation

__all__ = [
    "ConversationRecord",
    "CorruptStore",
    "HistoryStore",
    "MessageRecord",
    "NotFound",
    "SearchHit",
    "StoreError",
    "Unstorable",
    "fts_query",
    "move_aside",
    "store_file",
    "title_from",
    "to_conversation",
]


class HistoryStore(TreeQueries):
    """An open history database. Safe to share between threads (one lock). Reading and
    changing the tree of a conversation's messages is :class:`TreeQueries`'s.

    Its contract with callers: every method raises only gemma-chat's own errors, all
    :class:`~gemma_chat.errors.GemmaChatError` subclasses with a one-line message:
    :class:`StoreError` (the file cannot be used; :class:`CorruptStore` when it is
    damaged), :class:`NotFound`, :class:`Unstorable` (a value SQLite cannot hold) and
    :class:`~gemma_chat.errors.UsageError` for bad arguments. No ``sqlite3``,
    ``OverflowError`` or ``UnicodeEncodeError`` gets out.
    """

    def __init__(self, path: Path | None = None) -> None:
        """Open (creating if needed) and migrate the store.

        Raises:
            CorruptStore: The file is not a SQLite database or is damaged.
            StoreError: It cannot be opened, or a newer gemma-chat wrote it.
        """
        self.path = path or store_file()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the history folder {self.path.parent}: {exc}"
            ) from None
        try:
            self._conn = connection.connect(self.path)
        except sqlite3.Error as exc:
            raise self._translate(exc) from None
        try:
            schema.migrate(self._conn)
        except schema.NewerSchema as exc:
            self._conn.close()
            raise StoreError(
                f"the history database {self.path} was written by a newer gemma-chat "
                f"(schema {exc.found}, this one knows {schema.VERSION}); upgrade gemma-chat"
            ) from None
        except sqlite3.Error as exc:
            self._conn.close()
            raise self._translate(exc) from None
        except BaseException:
            self._conn.close()
            raise

    def _translate(self, exc: Exception) -> StoreError:
        return translate(exc, self.path)

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except DRIVER_ERRORS as exc:
                raise self._translate(exc) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the write lock from its start."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):  # a failed rollback must not hide the cause
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if isinstance(exc, DRIVER_ERRORS):
                    raise self._translate(exc) from None
                raise

    # ------------------------------------------------------------ conversations

    def create(
        self,
        *,
        title: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        origin: str | None = None,
    ) -> int:
        """Start a conversation and return its id (its title comes from the first
        message when not given; ``origin``: ``app`` or ``ask``). Ids only go up: a
        deleted one is never re-used."""
        stamp = now()
        with self._write() as conn:
            new_id = ids.next_id(conn)
            conn.execute(
                "INSERT INTO conversations (id, uuid, title, system, params, created_at, "
                "updated_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    str(uuid.uuid4()),
                    title or "",
                    system,
                    dumps(params or {}),
                    stamp,
                    stamp,
                    origin,
                ),
            )
            return new_id

    def get(self, conversation_id: int) -> ConversationRecord:
        """One conversation.

        Raises:
            NotFound: No conversation has that id.
        """
        with self._read() as conn:
            row = conn.execute(
                _CONVERSATION_SELECT + " WHERE c.id = ?", (conversation_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no conversation {conversation_id} in the history")
        return conversation_from_row(row)

    def conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Conversations, the one with the latest message first."""
        query = _CONVERSATION_SELECT + " ORDER BY c.updated_at DESC, c.id DESC"
        with self._read() as conn:
            rows = conn.execute(query + " LIMIT ?", (sql_limit(limit),)).fetchall()
        return [conversation_from_row(row) for row in rows]

    def latest(self, *, origin: str | None = None) -> ConversationRecord | None:
        """The conversation with the latest message, if any (``origin``: only one started
        from there, ``ask`` or ``app``, or from before origins were kept)."""
        if origin is None:
            found = self.conversations(limit=1)
            return found[0] if found else None
        query = (
            _CONVERSATION_SELECT + " WHERE c.origin = ? OR c.origin IS NULL"
            " ORDER BY c.updated_at DESC, c.id DESC LIMIT 1"
        )
        with self._read() as conn:
            row = conn.execute(query, (origin,)).fetchone()
        return conversation_from_row(row) if row is not None else None

    def rename(self, conversation_id: int, title: str) -> None:
        """Give a conversation a new title.

        Raises:
            NotFound: No conversation has that id.
            UsageError: The title is blank.
        """
        title = " ".join(title.split())
        if not title:
            raise UsageError("a title cannot be blank")
        self._update(conversation_id, "title = ?", (title,))

    def set_settings(
        self, conversation_id: int, system: str | None, params: dict[str, Any]
    ) -> None:
        """Record a changed system prompt or parameters, restored on resume."""
        self._update(conversation_id, "system = ?, params = ?", (system, dumps(params)))

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages.

        Raises:
            NotFound: No conversation has that id.
        """
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cursor.rowcount == 0:
                raise NotFound(f"no conversation {conversation_id} in the history")

    def delete_if_empty(self, conversation_id: int) -> bool:
        """Delete a conversation only if it has no messages (checked in the same
        statement, so a message another process just added keeps it).

        Returns:
            Whether it was deleted.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM conversations WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM messages WHERE conversation_id = ?)",
                (conversation_id, conversation_id),
            )
            return cursor.rowcount > 0

    def _update(self, conversation_id: int, assignments: str, values: tuple[Any, ...]) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?",
                (*values, conversation_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no conversation {conversation_id} in the history")

    # ----------------------------------------------------------------- messages

    def add(self, conversation_id: int, message: MessageRecord) -> MessageRecord:
        """Add a message after its ``parent_id`` (by default after the end of the branch
        viewed), committed before this returns; its branch becomes the one viewed.

        The first user message gives an untitled conversation its title.

        Returns:
            The message with its id and position.

        Raises:
            NotFound: No conversation has that id (it may have been deleted elsewhere),
                or the parent is not one of its messages.
        """
        with self._write() as conn:
            return append_message(conn, conversation_id, message)

    # ------------------------------------------------------------------- search

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages matching every word of ``text`` (each word also matches as a
        prefix), best matches first (see :mod:`gemma_chat.history.search`).

        Raises:
            UsageError: ``text`` has no word to search for.
        """
        query = fts_query(text)
        with self._read() as conn:
            return search_messages(conn, query, limit)

    # -------------------------------------------------------- whole conversations

    def insert(self, record: ConversationRecord, messages: list[MessageRecord]) -> int:
        """Store a whole conversation as given (import): uuid, times and every field
        (see :func:`gemma_chat.history.insert.insert_conversation`).

        Returns:
            The id it was stored under.

        Raises:
            UsageError: A conversation with the same uuid is already stored.
        """
        with self._write() as conn:
            return insert_conversation(conn, record, messages)


_CONVERSATION_SELECT = (
    "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
    "AS message_count FROM conversations c"
)
