"""The conversation store: every conversation and message, in one SQLite file.

The file is ``history.db`` in the data directory (``$GEMMA_CHAT_DATA_DIR`` overrides it).
It is crash-safe by construction:

* WAL journal with ``synchronous=FULL``: a committed message survives ``kill -9`` and a
  power cut, and readers never block the writer;
* each message is one short ``BEGIN IMMEDIATE`` transaction, written as soon as it is
  complete (a user message when it is sent, a reply when it ends, partial replies
  included), so a crash loses at most the reply being generated;
* several processes may write at once: they queue on SQLite's lock (``busy_timeout``),
  and each message takes the next free position inside its own transaction.

A file that is not a database, or is damaged, raises :class:`CorruptStore`, which names
the file; :func:`move_aside` renames it (never deletes it) so a new store can start.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gemma_chat import paths
from gemma_chat.conversation import Conversation, Role, StopReason, Turn
from gemma_chat.errors import GemmaChatError, UsageError
from gemma_chat.history import schema

STORE_FILE_NAME = "history.db"
BUSY_TIMEOUT_MS = 10_000
TITLE_LENGTH = 60
_SNIPPET_OPEN, _SNIPPET_CLOSE = "\x02", "\x03"


def store_file() -> Path:
    """Where the history lives: ``<data dir>/history.db``."""
    return paths.data_dir() / STORE_FILE_NAME


class StoreError(GemmaChatError):
    """The history store cannot be used."""


class CorruptStore(StoreError):
    """The history file is not a readable SQLite database.

    Attributes:
        path: The file.
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"the history database {path} is unreadable ({reason}). Nothing was changed; "
            "move it aside (kept, renamed) and start a new one with: "
            "gemma-chat history move-aside"
        )


class NotFound(UsageError):
    """No conversation has the given id."""


def now() -> str:
    """The current time as stored: ISO 8601, UTC, microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def title_from(text: str) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = " ".join(line.split())
    if len(line) > TITLE_LENGTH:
        line = line[: TITLE_LENGTH - 1].rstrip() + "…"
    return line or "Untitled"


@dataclass(frozen=True)
class ConversationRecord:
    """A stored conversation (without its messages).

    Attributes:
        id: The number users type (``history show 12``).
        uuid: A global identity, kept by export and import.
        title: Shown in lists; from the first message until renamed.
        system: The system prompt.
        params: The sampling and repeat-guard settings in use (``{"sampling": {...},
            "repeat_guard": {...}}``), restored on resume.
        created_at: ISO 8601 UTC.
        updated_at: ISO 8601 UTC; the last message or change.
        message_count: How many messages it has.
    """

    id: int
    uuid: str
    title: str
    system: str | None
    params: dict[str, Any]
    created_at: str
    updated_at: str
    message_count: int = 0


@dataclass(frozen=True)
class MessageRecord:
    """One stored message: enough to show it, resume from it and reproduce it.

    Attributes:
        role: ``user`` or ``model``.
        text: Exactly what was shown.
        stop_reason: For replies, why it ended.
        partial: For replies, True when it did not end at the end of the model's turn.
        prompt_tokens: Tokens in the prompt the reply was generated from.
        completion_tokens: Tokens in the reply.
        ttft_s: Seconds to the first token.
        tokens_per_s: Decode speed.
        model: The model file name.
        model_sha256: The model file's sha256.
        sampling: The sampling parameters, with the seed actually used.
        token_ids: The reply's token ids (valid for ``model_sha256`` only), which keep a
            resumed prompt identical to the one the KV cache holds.
        created_at: ISO 8601 UTC.
        id: The row id (0 before it is stored).
        seq: The position in the conversation, from 0.
    """

    role: str
    text: str
    stop_reason: str | None = None
    partial: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    model: str | None = None
    model_sha256: str | None = None
    sampling: dict[str, Any] | None = None
    token_ids: tuple[int, ...] | None = None
    created_at: str = field(default_factory=now)
    id: int = 0
    seq: int = 0


@dataclass(frozen=True)
class SearchHit:
    """One message matching a search.

    Attributes:
        conversation_id: Its conversation.
        title: The conversation's title.
        message_id: The message's row id.
        seq: Its position in the conversation.
        role: Who wrote it.
        snippet: The matching text with each match between ``\\x02`` and ``\\x03``
            (see :meth:`highlighted`).
        created_at: When it was written.
    """

    conversation_id: int
    title: str
    message_id: int
    seq: int
    role: str
    snippet: str
    created_at: str

    def highlighted(self, start: str = "", end: str = "") -> str:
        """The snippet on one line, each match wrapped in ``start`` and ``end``."""
        text = " ".join(self.snippet.split())
        return text.replace(_SNIPPET_OPEN, start).replace(_SNIPPET_CLOSE, end)


class HistoryStore:
    """An open history database. Safe to share between threads (one lock)."""

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
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the history database {self.path}: {exc}") from None
        try:
            self._configure()
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

    def _configure(self) -> None:
        conn = self._conn
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the history database {self.path} cannot use WAL mode ({mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Reading the schema makes SQLite parse the header: a file that is not a
        # database fails here, not at the first user action.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return CorruptStore(self.path, str(exc))
        message = str(exc)
        if "malformed" in message or "not a database" in message:
            return CorruptStore(self.path, message)
        return StoreError(f"history database {self.path}: {message}")

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
            except sqlite3.Error as exc:
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
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
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
        message when not given)."""
        stamp = now()
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (uuid, title, system, params, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), title or "", system, _dumps(params or {}), stamp, stamp),
            )
            return int(cursor.lastrowid or 0)

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
        return _conversation(row)

    def conversations(self, limit: int | None = None) -> list[ConversationRecord]:
        """Conversations, most recently updated first."""
        query = _CONVERSATION_SELECT + " ORDER BY c.updated_at DESC, c.id DESC"
        with self._read() as conn:
            rows = conn.execute(
                query + " LIMIT ?", (limit if limit is not None else -1,)
            ).fetchall()
        return [_conversation(row) for row in rows]

    def latest(self) -> ConversationRecord | None:
        """The most recently updated conversation, if any."""
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
        self._update(conversation_id, "system = ?, params = ?", (system, _dumps(params)))

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its messages.

        Raises:
            NotFound: No conversation has that id.
        """
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            if cursor.rowcount == 0:
                raise NotFound(f"no conversation {conversation_id} in the history")

    def _update(self, conversation_id: int, assignments: str, values: tuple[Any, ...]) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",
                (*values, now(), conversation_id),
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
            row = conn.execute(
                "SELECT title, (SELECT coalesce(max(seq) + 1, 0) FROM messages "
                "WHERE conversation_id = ?) AS next FROM conversations WHERE id = ?",
                (conversation_id, conversation_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no conversation {conversation_id} in the history")
            seq = int(row["next"])
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, seq, role, text, stop_reason, "
                "partial, prompt_tokens, completion_tokens, ttft_s, tokens_per_s, model, "
                "model_sha256, sampling, token_ids, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    seq,
                    message.role,
                    message.text,
                    message.stop_reason,
                    int(message.partial),
                    message.prompt_tokens,
                    message.completion_tokens,
                    message.ttft_s,
                    message.tokens_per_s,
                    message.model,
                    message.model_sha256,
                    None if message.sampling is None else _dumps(message.sampling),
                    _pack_ids(message.token_ids),
                    message.created_at,
                ),
            )
            if not row["title"] and message.role == Role.USER.value:
                conn.execute(
                    "UPDATE conversations SET title = ? WHERE id = ?",
                    (title_from(message.text), conversation_id),
                )
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now(), conversation_id)
            )
        return replace(message, id=int(cursor.lastrowid or 0), seq=seq)

    def messages(self, conversation_id: int) -> list[MessageRecord]:
        """A conversation's messages in order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY seq",
                (conversation_id,),
            ).fetchall()
        return [_message(row) for row in rows]

    def truncate(self, conversation_id: int, keep: int) -> int:
        """Delete every message after the first ``keep`` (retry and edit in the app).

        Returns:
            How many messages were deleted.
        """
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND seq >= ?",
                (conversation_id, keep),
            )
            conn.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now(), conversation_id)
            )
            return cursor.rowcount

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
                f"snippet(messages_fts, 0, '{_SNIPPET_OPEN}', '{_SNIPPET_CLOSE}', '…', 12) "
                "AS snippet FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                "JOIN conversations c ON c.id = m.conversation_id "
                "WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts), m.id DESC LIMIT ?",
                (query, limit),
            ).fetchall()
        return [
            SearchHit(
                conversation_id=row["conversation_id"],
                title=row["title"],
                message_id=row["id"],
                seq=row["seq"],
                role=row["role"],
                snippet=row["snippet"],
                created_at=row["created_at"],
            )
            for row in rows
        ]

    # -------------------------------------------------------- whole conversations

    def insert(self, record: ConversationRecord, messages: list[MessageRecord]) -> int:
        """Store a whole conversation as given (import): uuid, times and every field.

        The id is kept when it is free, so an export imported into an empty store is
        the same conversation under the same number.

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
                    f"conversation {record.uuid} is already in the history as {clash['id']}"
                )
            taken = conn.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (record.id,)
            ).fetchone()
            cursor = conn.execute(
                "INSERT INTO conversations (id, uuid, title, system, params, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    None if taken or record.id <= 0 else record.id,
                    record.uuid,
                    record.title,
                    record.system,
                    _dumps(record.params),
                    record.created_at,
                    record.updated_at,
                ),
            )
            new_id = int(cursor.lastrowid or 0)
            for seq, message in enumerate(messages):
                conn.execute(
                    "INSERT INTO messages (conversation_id, seq, role, text, stop_reason, "
                    "partial, prompt_tokens, completion_tokens, ttft_s, tokens_per_s, "
                    "model, model_sha256, sampling, token_ids, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        new_id,
                        seq,
                        message.role,
                        message.text,
                        message.stop_reason,
                        int(message.partial),
                        message.prompt_tokens,
                        message.completion_tokens,
                        message.ttft_s,
                        message.tokens_per_s,
                        message.model,
                        message.model_sha256,
                        None if message.sampling is None else _dumps(message.sampling),
                        _pack_ids(message.token_ids),
                        message.created_at,
                    ),
                )
            return new_id


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


def to_conversation(
    record: ConversationRecord, messages: list[MessageRecord], model_sha256: str | None
) -> Conversation:
    """The core :class:`Conversation` for a stored one, ready to continue.

    Reply token ids are kept only for the model that generated them (``model_sha256``);
    for another model the text is tokenized again. A trailing user message without a
    reply (the process died mid-reply) is left pending.
    """
    conversation = Conversation(system=record.system)
    for message in messages:
        if message.role == Role.USER.value:
            if conversation.pending_user is not None:
                # Two user messages in a row (an earlier reply was lost): keep both as one.
                conversation.turns[-1].text += "\n\n" + message.text
                continue
            conversation.add_user(message.text)
        elif conversation.pending_user is not None:
            same_model = model_sha256 is not None and message.model_sha256 == model_sha256
            conversation.add_model(
                message.text,
                StopReason(message.stop_reason or StopReason.END_OF_TURN.value),
                message.token_ids if same_model else None,
            )
    return conversation


def user_message(turn: Turn) -> MessageRecord:
    """The record of a user turn."""
    return MessageRecord(role=Role.USER.value, text=turn.text)


_CONVERSATION_SELECT = (
    "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
    "AS message_count FROM conversations c"
)


def _conversation(row: sqlite3.Row) -> ConversationRecord:
    return ConversationRecord(
        id=row["id"],
        uuid=row["uuid"],
        title=row["title"] or "Untitled",
        system=row["system"],
        params=_loads(row["params"]) or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
    )


def _message(row: sqlite3.Row) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        seq=row["seq"],
        role=row["role"],
        text=row["text"],
        stop_reason=row["stop_reason"],
        partial=bool(row["partial"]),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        ttft_s=row["ttft_s"],
        tokens_per_s=row["tokens_per_s"],
        model=row["model"],
        model_sha256=row["model_sha256"],
        sampling=_loads(row["sampling"]),
        token_ids=_unpack_ids(row["token_ids"]),
        created_at=row["created_at"],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _pack_ids(ids: tuple[int, ...] | None) -> bytes | None:
    # Little-endian int32, whatever the machine: the file may move between machines.
    if ids is None:
        return None
    packed = array("i", ids)
    if packed.itemsize != 4:  # pragma: no cover - every supported platform has 4-byte int
        raise RuntimeError("unexpected int size")
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpack_ids(blob: bytes | None) -> tuple[int, ...] | None:
    if blob is None:
        return None
    packed = array("i")
    packed.frombytes(blob)
    if _BIG_ENDIAN:
        packed.byteswap()
    return tuple(packed)


_BIG_ENDIAN = array("i", [1]).tobytes()[0] == 0


def move_aside(path: Path | None = None) -> Path:
    """Rename a damaged history file (and its WAL and shared-memory files) out of the
    way, so the next start creates a new store. Nothing is deleted.

    Returns:
        The new name of the database file.

    Raises:
        StoreError: There is no file, or it cannot be renamed.
    """
    path = path or store_file()
    if not path.exists():
        raise StoreError(f"there is no history database at {path}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.unreadable-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.unreadable-{stamp}-{counter}")
    try:
        path.rename(target)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
    except OSError as exc:
        raise StoreError(f"cannot move {path} aside: {exc}") from None
    return target
