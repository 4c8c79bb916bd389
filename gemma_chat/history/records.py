"""What the history stores: conversations, messages and search hits, and how they map to
and from SQLite rows. Plain data; no connection here."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

TITLE_LENGTH = 60
SNIPPET_OPEN, SNIPPET_CLOSE = "\x02", "\x03"
SNIPPET_LENGTH = 300
"""The most characters of message text a search hit carries (markers not counted)."""
SNIPPET_WORD = 60
"""A longer word in a snippet is cut (FTS5 bounds a snippet in words, and one word can be
megabytes)."""
ELLIPSIS = "…"


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
        id: The number users type (``history show 12``). Never re-used, even after a
            delete, so an old command line never reaches another conversation.
        uuid: A global identity, kept by export and import.
        title: Shown in lists; from the first message until renamed.
        system: The system prompt for the next reply.
        params: The sampling and repeat-guard settings in use (``{"sampling": {...},
            "repeat_guard": {...}}``), restored on resume.
        created_at: ISO 8601 UTC.
        updated_at: ISO 8601 UTC: the last message added (renaming is not activity).
        message_count: How many messages it holds, on every branch.
        origin: Where it was started: ``app`` or ``ask`` (None: before this was kept).
        active_id: The last message of the branch last viewed, which resuming opens
            (None when it has no message).
    """

    id: int
    uuid: str
    title: str
    system: str | None
    params: dict[str, Any]
    created_at: str
    updated_at: str
    message_count: int = 0
    origin: str | None = None
    active_id: int | None = None


AFTER_ACTIVE = -1
"""A :attr:`MessageRecord.parent_id` that means "after the last message of the branch
last viewed" (a plain ``ask --continue``): the store finds it in the write's
transaction."""


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
        sampling: The sampling parameters the reply was generated with, the seed
            actually used, and the repeat guard (under ``"repeat_guard"``).
        token_ids: The reply's token ids (valid for ``model_sha256`` only), which keep a
            resumed prompt identical to the one the KV cache holds.
        reply_to: For replies, the id of the user message answered (two processes
            adding to one conversation at once can interleave their rows).
        system: For replies, the system prompt in force when it was generated.
        meta: Anything else worth keeping about it, as a JSON object: the files
            attached to a question, the notes of a map-reduce answer, a compaction.
        parent_id: The message it follows (None: it starts a branch from the start of
            the conversation). An edited question is a sibling of the question it
            edits, a regenerated reply one of the reply it regenerates: nothing is
            replaced. :data:`AFTER_ACTIVE` before it is stored.
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
    reply_to: int | None = None
    system: str | None = None
    meta: dict[str, Any] | None = None
    parent_id: int | None = AFTER_ACTIVE
    created_at: str = field(default_factory=now)
    id: int = 0
    seq: int = 0


MESSAGE_COLUMNS = (
    "role",
    "text",
    "stop_reason",
    "partial",
    "prompt_tokens",
    "completion_tokens",
    "ttft_s",
    "tokens_per_s",
    "model",
    "model_sha256",
    "sampling",
    "token_ids",
    "reply_to",
    "system",
    "meta",
    "parent_id",
    "created_at",
)
MESSAGE_INSERT = (
    f"INSERT INTO messages (conversation_id, seq, {', '.join(MESSAGE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(MESSAGE_COLUMNS) + 2))})"
)
"""Insert one message row: its conversation, its position, then :data:`MESSAGE_COLUMNS`
(the message columns a writer fills)."""


def message_values(message: MessageRecord) -> tuple[Any, ...]:
    """The values for :data:`MESSAGE_COLUMNS`, in order."""
    return (
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
        None if message.sampling is None else dumps(message.sampling),
        pack_ids(message.token_ids),
        message.reply_to,
        message.system,
        None if message.meta is None else dumps(message.meta),
        message.parent_id,
        message.created_at,
    )


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
        return text.replace(SNIPPET_OPEN, start).replace(SNIPPET_CLOSE, end)


def conversation_from_row(row: sqlite3.Row) -> ConversationRecord:
    """A conversation from a ``conversations`` row plus its ``message_count``."""
    return ConversationRecord(
        id=row["id"],
        uuid=row["uuid"],
        title=row["title"] or "Untitled",
        system=row["system"],
        params=loads(row["params"]) or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=row["message_count"],
        origin=row["origin"],
        active_id=row["active_id"],
    )


def message_from_row(row: sqlite3.Row) -> MessageRecord:
    """A message from a ``messages`` row."""
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
        sampling=loads(row["sampling"]),
        token_ids=unpack_ids(row["token_ids"]),
        reply_to=row["reply_to"],
        system=row["system"],
        meta=loads(row["meta"]),
        parent_id=row["parent_id"],
        created_at=row["created_at"],
    )


def hit_from_row(row: sqlite3.Row) -> SearchHit:
    """A search hit from the search query's row (a message, its title and snippet)."""
    return SearchHit(
        conversation_id=row["conversation_id"],
        title=row["title"],
        message_id=row["id"],
        seq=row["seq"],
        role=row["role"],
        snippet=bound_snippet(row["snippet"]),
        created_at=row["created_at"],
    )


def bound_snippet(snippet: str) -> str:
    """A snippet of at most :data:`SNIPPET_LENGTH` characters of text, each word at most
    :data:`SNIPPET_WORD`, with every match marker still paired."""
    parts = snippet.split(SNIPPET_OPEN)
    # parts[0] is before the first match; each later part is "match CLOSE after".
    pieces = [(parts[0], False)]
    for part in parts[1:]:
        inside, _, after = part.partition(SNIPPET_CLOSE)
        pieces += [(inside, True), (after, False)]
    out: list[str] = []
    left = SNIPPET_LENGTH
    for text, matched in pieces:
        text = _short_words(text)
        if len(text) > left:
            text = text[: max(left - 1, 0)] + ELLIPSIS
        if text:
            out.append(f"{SNIPPET_OPEN}{text}{SNIPPET_CLOSE}" if matched else text)
        left -= len(text)
        if left <= 0:
            break
    return "".join(out)


def _short_words(text: str) -> str:
    if len(text) <= SNIPPET_WORD:
        return text
    return re.sub(
        rf"\S{{{SNIPPET_WORD + 1},}}", lambda m: m.group()[: SNIPPET_WORD - 1] + ELLIPSIS, text
    )


def dumps(value: Any) -> str:
    """JSON as stored (key order fixed, so equal values are equal text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads(text: str | None) -> Any:
    """Stored JSON back to a value."""
    return None if text is None else json.loads(text)


def pack_ids(ids: tuple[int, ...] | None) -> bytes | None:
    """Token ids as little-endian int32, whatever the machine (the file may move)."""
    if ids is None:
        return None
    packed = array("i", ids)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return packed.tobytes()


def unpack_ids(blob: bytes | None) -> tuple[int, ...] | None:
    """The inverse of :func:`pack_ids`."""
    if blob is None:
        return None
    packed = array("i")
    packed.frombytes(blob)
    if sys.byteorder == "big":  # pragma: no cover
        packed.byteswap()
    return tuple(packed)
