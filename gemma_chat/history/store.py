"""The conversation store: every conversation and message, in one SQLite file.

The file is ``history.db`` in the data directory (``$GEMMA_CHAT_DATA_DIR`` overrides it).
It is crash-safe by construction:

* WAL journal with ``synchronous=FULL``: a committed message survives ``kill -9`` and a
  power cut, and readers never block the writer;
* each message is one short ``BEGIN IMMEDIATE`` transaction, written as soon as it is
  complete (a user message when it is sent, a reply when it ends, partial replies
  included), so a crash loses at most the reply being generated;
* several processes may write at once: they queue on SQLite's lock (``busy_timeout``),
  each message takes the next free position inside its own transaction, and a reply
  names its question, so interleaved exchanges are paired back (see ``turns``). Messages
  are only ever deleted by id, never by position, so one process cannot delete what
  another wrote.

A file that is not a database, or is damaged, raises :class:`CorruptStore`, which names
the file; :func:`move_aside` renames it (never deletes it) so a new store can start.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from gemma_chat.errors import UsageError
from gemma_chat.history import connection, schema
from gemma_chat.history.problems import (
    CorruptStore,
    NotFound,
    StoreError,
    Unstorable,
    move_aside,
    store_file,
)
from gemma_chat.history.records import (
    MESSAGE_COLUMNS,
    SNIPPET_CLOSE,
    SNIPPET_OPEN,
    ConversationRecord,
    MessageRecord,
    SearchHit,
    conversation_from_row,
    dumps,
    hit_from_row,
    message_from_row,
    message_values,
    now,
    title_from,
)
from gemma_chat.history.turns import to_conversation
from gemma_chat.sanitize import one_line

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

ID_LIMIT = 2**53 - 1
"""The highest conversation id ever handed out: far from SQLite's 2**63 - 1, so adding
one never overflows, and exact in every JSON reader (a double holds it)."""
KEEP_ID_LIMIT = 2**31 - 1
"""An import keeps its id only up to here; a larger one gets the next id, so no file can
push the counter anywhere near :data:`ID_LIMIT`."""
_INT64_MAX = 2**63 - 1
# What the sqlite3 module raises besides sqlite3.Error: a Python int SQLite cannot hold,
# and a str that is not valid Unicode. The store turns all three into its own errors.
_DRIVER_ERRORS = (sqlite3.Error, OverflowError, UnicodeEncodeError)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


def _is_corrupt(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    message = str(exc)
    return "malformed" in message or "not a database" in message


class HistoryStore:
    """An open history database. Safe to share between threads (one lock).

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
        if isinstance(exc, OverflowError):
            return Unstorable(f"a number is out of the history database's range: {exc}")
        if isinstance(exc, UnicodeEncodeError):
            return Unstorable(
                "text that is not valid Unicode (a lone surrogate) cannot go into the history"
            )
        if _is_corrupt(exc):
            return CorruptStore(self.path, str(exc))
        return StoreError(f"history database {self.path}: {exc}")

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
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
            except _DRIVER_ERRORS as exc:
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
                if isinstance(exc, _DRIVER_ERRORS):
                    raise self._translate(exc) from None
                raise

    # ------------------------------------------------------------ conversations

    def create(
        self,
        *,
        title: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> int:
        """Start a conversation and return its id (its title comes from the first
        message when not given). Ids only go up: a deleted one is never re-used."""
        stamp = now()
        with self._write() as conn:
            new_id = _next_id(conn)
            conn.execute(
                "INSERT INTO conversations (id, uuid, title, system, params, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id, str(uuid.uuid4()), title or "", system, dumps(params or {}), stamp, stamp),
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
            rows = conn.execute(query + " LIMIT ?", (_sql_limit(limit),)).fetchall()
        return [conversation_from_row(row) for row in rows]

    def latest(self) -> ConversationRecord | None:
        """The conversation with the latest message, if any."""
        found = self.conversations(limit=1)
        return found[0] if found else None

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
        """Append a message, committed before this returns.

        The first user message gives an untitled conversation its title.

        Returns:
            The message with its id and position.

        Raises:
            NotFound: No conversation has that id (it may have been deleted elsewhere).
        """
        with self._write() as conn:
            return self._append(conn, conversation_id, message)

    def replace(
        self, conversation_id: int, old_ids: Iterable[int], message: MessageRecord
    ) -> MessageRecord:
        """Delete messages and append one, in one transaction (a regenerated reply
        replaces the old one only once it exists)."""
        with self._write() as conn:
            self._delete_ids(conn, conversation_id, old_ids)
            return self._append(conn, conversation_id, message)

    def delete_messages(self, conversation_id: int, ids: Iterable[int]) -> int:
        """Delete the given messages of a conversation (edit in the app).

        Returns:
            How many were deleted.
        """
        with self._write() as conn:
            return self._delete_ids(conn, conversation_id, ids)

    def messages(self, conversation_id: int) -> list[MessageRecord]:
        """A conversation's messages in the order they were written."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [message_from_row(row) for row in rows]

    def _append(
        self, conn: sqlite3.Connection, conversation_id: int, message: MessageRecord
    ) -> MessageRecord:
        row = conn.execute(
            "SELECT title, (SELECT coalesce(max(seq) + 1, 0) FROM messages "
            "WHERE conversation_id = ?) AS next FROM conversations WHERE id = ?",
            (conversation_id, conversation_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no conversation {conversation_id} in the history")
        seq = int(row["next"])
        cursor = conn.execute(_MESSAGE_INSERT, (conversation_id, seq, *message_values(message)))
        if not row["title"] and message.role == "user":
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                (title_from(message.text), conversation_id),
            )
        conn.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?", (now(), conversation_id)
        )
        return replace(message, id=int(cursor.lastrowid or 0), seq=seq)

    @staticmethod
    def _delete_ids(conn: sqlite3.Connection, conversation_id: int, ids: Iterable[int]) -> int:
        count = 0
        for message_id in ids:
            cursor = conn.execute(
                "DELETE FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation_id),
            )
            count += cursor.rowcount
        return count

    # ------------------------------------------------------------------- search

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages matching every word of ``text`` (each word also matches as a
        prefix), best matches first.

        Raises:
            UsageError: ``text`` has no word to search for.
        """
        query = fts_query(text)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT m.id, m.conversation_id, m.seq, m.role, m.created_at, c.title, "
                f"snippet(messages_fts, 0, '{SNIPPET_OPEN}', '{SNIPPET_CLOSE}', '…', 12) "
                "AS snippet FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "JOIN conversations c ON c.id = m.conversation_id "
                "WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts), m.id DESC LIMIT ?",
                (query, _sql_limit(limit)),
            ).fetchall()
        return [hit_from_row(row) for row in rows]

    # -------------------------------------------------------- whole conversations

    def insert(self, record: ConversationRecord, messages: list[MessageRecord]) -> int:
        """Store a whole conversation as given (import): uuid, times and every field.

        The id is kept when it was never used in this store, so an export imported into
        a new store is the same conversation under the same number. ``reply_to`` is
        given as a position in ``messages`` and becomes the new row id.

        Returns:
            The id it was stored under.

        Raises:
            UsageError: A conversation with the same uuid is already stored.
        """
        with self._write() as conn:
            clash = conn.execute(
                "SELECT id FROM conversations WHERE uuid = ?", (record.uuid,)
            ).fetchone()
            if clash is not None:
                raise UsageError(
                    f"conversation {_shown(record.uuid)} is already in the history as {clash['id']}"
                )
            if _counter(conn) < record.id <= KEEP_ID_LIMIT:
                new_id = record.id
                conn.execute("UPDATE counters SET value = ? WHERE name = 'conversation'", (new_id,))
            else:
                new_id = _next_id(conn)
            conn.execute(
                "INSERT INTO conversations (id, uuid, title, system, params, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id,
                    record.uuid,
                    record.title,
                    record.system,
                    dumps(record.params),
                    record.created_at,
                    record.updated_at,
                ),
            )
            row_ids: list[int] = []
            for seq, message in enumerate(messages):
                reply_to = message.reply_to
                if reply_to is not None:
                    reply_to = row_ids[reply_to] if 0 <= reply_to < len(row_ids) else None
                values = message_values(replace(message, reply_to=reply_to))
                cursor = conn.execute(_MESSAGE_INSERT, (new_id, seq, *values))
                row_ids.append(int(cursor.lastrowid or 0))
            return new_id


def _counter(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM counters WHERE name = 'conversation'").fetchone()[0])


def _next_id(conn: sqlite3.Connection) -> int:
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
    conn.execute("UPDATE counters SET value = ? WHERE name = 'conversation'", (new_id,))
    return new_id


def _shown(text: str, length: int = 60) -> str:
    """Text from a file, safe and short enough for a one-line error."""
    text = one_line(text)
    return text if len(text) <= length else text[: length - 1] + "…"


def _sql_limit(limit: int | None) -> int:
    """A LIMIT SQLite can take: none (-1) for None or a number past its range."""
    return -1 if limit is None or limit > _INT64_MAX else limit


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


_CONVERSATION_SELECT = (
    "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
    "AS message_count FROM conversations c"
)
_MESSAGE_INSERT = (
    f"INSERT INTO messages (conversation_id, seq, {', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(MESSAGE_COLUMNS) + 2))})"
)
