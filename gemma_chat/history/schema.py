"""The history database's schema, versioned through ``PRAGMA user_version``.

Each entry of :data:`MIGRATIONS` takes the database from version ``n`` to ``n + 1``.
Migrations only ever go forward and never drop user data. A database written by a newer
gemma-chat (a higher version than this one knows) is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gemma_chat.history.linear import LinearMessage, linear_links

_V1 = """
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL,
    system      TEXT,
    params      TEXT    NOT NULL DEFAULT '{}',
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX conversations_updated ON conversations (updated_at DESC, id DESC);

CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    conversation_id    INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq                INTEGER NOT NULL,
    role               TEXT    NOT NULL CHECK (role IN ('user', 'model')),
    text               TEXT    NOT NULL,
    stop_reason        TEXT,
    partial            INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    ttft_s             REAL,
    tokens_per_s       REAL,
    model              TEXT,
    model_sha256       TEXT,
    sampling           TEXT,
    token_ids          BLOB,
    created_at         TEXT    NOT NULL,
    UNIQUE (conversation_id, seq)
);
"""

# Version 2 adds full-text search: an external-content FTS5 index over message text,
# kept in step by triggers, and filled from the messages already stored.
_V2 = """
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
"""

# Version 3: a reply names the question it answers (two processes adding to one
# conversation at once interleave their rows) and keeps the system prompt it was
# generated with; existing replies are linked to the question before them. Conversation
# ids come from a counter that only goes up, so a deleted id is never handed out again.
_V3 = """
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN system TEXT;
UPDATE messages SET reply_to = (
    SELECT q.id FROM messages q
    WHERE q.conversation_id = messages.conversation_id AND q.role = 'user'
      AND q.seq < messages.seq
    ORDER BY q.seq DESC LIMIT 1
) WHERE role = 'model';
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters (name, value)
    VALUES ('conversation', (SELECT coalesce(max(id), 0) FROM conversations));
"""

# Version 4: nothing a user saw is deleted by an edit or a regenerate any more. A replaced
# message stays, naming the message that replaced it (``replaced_by``; NULL = on the path
# shown), so a later conversation tree can turn replaced exchanges into branches. A
# message carries a JSON ``meta`` object (attached files, map-reduce notes, compaction),
# and a conversation its ``origin`` (``app`` or ``ask``; NULL for older ones).
_V4 = """
ALTER TABLE messages ADD COLUMN meta TEXT;
ALTER TABLE messages ADD COLUMN replaced_by INTEGER;
ALTER TABLE conversations ADD COLUMN origin TEXT;
CREATE INDEX messages_shown ON messages (conversation_id, seq) WHERE replaced_by IS NULL;
"""


def _v5(conn: sqlite3.Connection) -> None:
    """Version 5: the conversation tree. A message names its parent (``parent_id``; NULL
    for the first message of a branch from the start), and a conversation the last
    message of the branch last viewed (``active_id``), which resuming opens. Edits and
    regenerates add siblings instead of replacing: ``replaced_by`` goes, after the
    linear history is turned into branches (see :mod:`gemma_chat.history.linear`)."""
    conn.execute("ALTER TABLE messages ADD COLUMN parent_id INTEGER")
    conn.execute("ALTER TABLE conversations ADD COLUMN active_id INTEGER")
    conversations = [row[0] for row in conn.execute("SELECT id FROM conversations")]
    for conversation_id in conversations:
        rows = conn.execute(
            "SELECT id, role, reply_to, replaced_by FROM messages "
            "WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        ).fetchall()
        parents, active = linear_links([LinearMessage(*row) for row in rows])
        conn.executemany(
            "UPDATE messages SET parent_id = ? WHERE id = ?",
            [(parent, key) for key, parent in parents.items()],
        )
        conn.execute(
            "UPDATE conversations SET active_id = ? WHERE id = ?", (active, conversation_id)
        )
    conn.execute("DROP INDEX messages_shown")
    if sqlite3.sqlite_version_info >= (3, 35):  # DROP COLUMN; older SQLite keeps it, unused
        conn.execute("ALTER TABLE messages DROP COLUMN replaced_by")
    conn.execute("CREATE INDEX messages_children ON messages (conversation_id, parent_id)")


Migration = str | Callable[[sqlite3.Connection], None]
"""SQL statements, or a function for what SQL alone cannot do (run in the same
transaction)."""

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _v5)
"""``MIGRATIONS[n]`` upgrades a version-``n`` database to version ``n + 1``."""

VERSION = len(MIGRATIONS)
"""The schema version this gemma-chat writes."""


class NewerSchema(Exception):
    """The database was written by a newer gemma-chat."""

    def __init__(self, found: int) -> None:
        super().__init__(found)
        self.found = found


def migrate(conn: sqlite3.Connection, target: int = VERSION) -> int:
    """Bring the database up to ``target``, one version per transaction.

    Args:
        conn: A connection in autocommit mode (``isolation_level=None``).
        target: The version to reach (tests stop at earlier ones).

    Returns:
        The version the database had before.

    Raises:
        NewerSchema: The database is newer than this code.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > VERSION:
        raise NewerSchema(found)
    for version in range(found, target):
        # BEGIN IMMEDIATE takes the write lock first, so two processes opening a new
        # store at once cannot both run the same migration: the second one waits, then
        # re-reads the version and finds nothing left to do.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] != version:
                conn.execute("ROLLBACK")
                continue
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit on its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
