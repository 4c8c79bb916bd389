"""Export and import: lossless JSON (and, re-exported, the readable Markdown transcript
of :mod:`gemma_chat.history.markdown`).

The JSON form holds every stored field (uuid, times, token ids, sampling, stats), and
every branch of the conversation tree; it is validated with pydantic on import, and
round-trips: exporting an imported export gives the same document. JSON escapes control
characters, so it stays lossless.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gemma_chat.chat.conversation import StopReason
from gemma_chat.config.plain_errors import plain_message
from gemma_chat.errors import UsageError
from gemma_chat.history.export_links import check_linear, check_tree, tree_links
from gemma_chat.history.markdown import export_markdown
from gemma_chat.history.store import ConversationRecord, HistoryStore, MessageRecord
from gemma_chat.sanitize import json_safe, one_line
from gemma_chat.structured.json_depth import json_depth

__all__ = ["export_json", "export_markdown", "import_json", "parse_document"]

FORMAT_NAME = "gemma-chat-conversation"
FORMAT_VERSION = 3
"""Version 3 is the conversation tree: each message names its ``parent`` and the
conversation its ``active`` message (the end of the branch last viewed), both as
positions in the message list. Version 2 added ``meta`` and ``replaced_by`` (a linear
history; imported as branches, see :mod:`gemma_chat.history.linear`) and ``origin``;
versions 1 and 2 import as before."""


_INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=_INT64)]
TokenId = Annotated[int, Field(ge=0, lt=2**31)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    role: Literal["user", "model"]
    text: str
    stop_reason: StopReason | None = None
    partial: bool = False
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    model: str | None = None
    model_sha256: str | None = None
    sampling: dict[str, Any] | None = None
    token_ids: list[TokenId] | None = None
    reply_to: Count | None = None
    """The position (in this list) of the question a reply answers."""
    system: str | None = None
    meta: dict[str, Any] | None = None
    parent: Count | None = None
    """Version 3: the position (in this list) of the message it follows (None: it starts
    a branch from the start)."""
    replaced_by: Count | None = None
    """Version 2: the position of the message that replaced this one: a later one."""
    created_at: str

    @field_validator("meta")
    @classmethod
    def _shallow(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and json_depth(value) > META_DEPTH:
            raise ValueError(f"nested more than {META_DEPTH} deep")
        return value


class _Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Count = 0
    uuid: str = Field(min_length=1)
    title: str
    system: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: str
    updated_at: str
    origin: Literal["app", "ask"] | None = None
    active: Count | None = None
    """Version 3: the position of the end of the branch last viewed."""


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["gemma-chat-conversation"]
    version: Literal[1, 2, 3]
    conversation: _Conversation
    messages: list[_Message]

    @model_validator(mode="after")
    def _links(self) -> _Document:
        if self.version < 3:
            check_linear(self.messages, self.conversation.active)
        else:
            check_tree(self.messages, self.conversation.active)
        return self


META_DEPTH = 16
"""How deeply an imported message's ``meta`` may nest (gemma-chat writes 3 levels)."""


def export_json(store: HistoryStore, conversation_id: int) -> str:
    """A conversation, every branch of it, as one lossless JSON document."""
    record = store.get(conversation_id)
    messages = store.all_messages(conversation_id)
    positions = {message.id: index for index, message in enumerate(messages)}
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "conversation": {
            "id": record.id,
            "uuid": record.uuid,
            "title": record.title,
            "system": record.system,
            "params": record.params,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "origin": record.origin,
            "active": None if record.active_id is None else positions.get(record.active_id),
        },
        "messages": [_message_dict(message, positions) for message in messages],
    }
    return json_safe(json.dumps(document, ensure_ascii=False, indent=2)) + "\n"


def _message_dict(message: MessageRecord, positions: dict[int, int]) -> dict[str, Any]:
    return {
        "role": message.role,
        "text": message.text,
        "stop_reason": message.stop_reason,
        "partial": message.partial,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "ttft_s": message.ttft_s,
        "tokens_per_s": message.tokens_per_s,
        "model": message.model,
        "model_sha256": message.model_sha256,
        "sampling": message.sampling,
        "token_ids": None if message.token_ids is None else list(message.token_ids),
        "reply_to": None if message.reply_to is None else positions.get(message.reply_to),
        "system": message.system,
        "meta": message.meta,
        "parent": None if message.parent_id is None else positions.get(message.parent_id),
        "created_at": message.created_at,
    }


def import_json(store: HistoryStore, text: str, source: str = "the file") -> int:
    """Store a conversation exported by :func:`export_json`.

    Returns:
        The id it was stored under: its old id when that is free and in range
        (see :data:`~gemma_chat.history.ids.KEEP_ID_LIMIT`), else the next one.

    Raises:
        UsageError: The text is not such a document (the message names up to
            :data:`MAX_PROBLEMS` problems, each with its field path), or the
            conversation is already stored.
    """
    document = parse_document(text, source)
    conv = document.conversation
    parents, active = tree_links(document)
    record = ConversationRecord(
        id=conv.id,
        uuid=conv.uuid,
        title=conv.title,
        system=conv.system,
        params=conv.params,
        created_at=conv.created_at,
        updated_at=conv.updated_at,
        origin=conv.origin,
        active_id=active,
    )
    messages = [
        MessageRecord(
            **{
                **message.model_dump(exclude={"parent", "replaced_by"}),
                "stop_reason": None if message.stop_reason is None else message.stop_reason.value,
                "token_ids": None if message.token_ids is None else tuple(message.token_ids),
                "parent_id": parent,
            }
        )
        for message, parent in zip(document.messages, parents, strict=True)
    ]
    return store.insert(record, messages)


MAX_PROBLEMS = 20
"""The most validation problems one import error lists."""
_PART_LENGTH = 40  # a field name in an error comes from the file: keep it short


def parse_document(text: str, source: str = "the file") -> _Document:
    """Parse and validate an export; any problem is one :class:`UsageError` line.

    Raises:
        UsageError: Not JSON, not valid Unicode, nested too deeply, or not an export.
    """
    try:
        data = json.loads(text)
        # A "\ud800" escape decodes to a lone surrogate, which no file, terminal or
        # SQLite text can hold: find it now, wherever it is (keys included).
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise UsageError(f"{source} is nested too deeply to be an export") from None
    except UnicodeEncodeError:
        raise UsageError(
            f"{source} holds text that is not valid Unicode (an unpaired \\uD800-\\uDFFF escape)"
        ) from None
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {one_line(str(exc))[:200]}") from None
    try:
        return _Document.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            f"{source} is not a gemma-chat conversation export: {_problems(exc)}"
        ) from None
    except RecursionError:
        raise UsageError(f"{source} is nested too deeply to be an export") from None


def _problems(exc: ValidationError) -> str:
    """Every problem (up to :data:`MAX_PROBLEMS`) as ``field.path: message``, one line."""
    errors = exc.errors(include_url=False, include_input=False)
    shown = []
    for error in errors[:MAX_PROBLEMS]:
        where = ".".join(_short(str(part)) for part in error["loc"]) or "the document"
        shown.append(f"{where}: {plain_message(error)}")
    more = len(errors) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _short(part: str) -> str:
    part = one_line(part)
    return part if len(part) <= _PART_LENGTH else part[: _PART_LENGTH - 1] + "…"
