"""The wire format of a streamed reply: server-sent events, the chunks in them, and the
errors servers report.

Every read is bounded: a line longer than :data:`MAX_LINE_BYTES` (an endless ``data:``
or comment line) and an event longer than :data:`MAX_EVENT_BYTES` (endless ``data:``
lines with no blank line) end the stream with a one-line :class:`RemoteError`, before
they can grow memory. (The whole stream's size and duration are capped by
:mod:`gemma_chat.backend.bounded`.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gemma_chat import sanitize
from gemma_chat.errors import GemmaChatError

MAX_LINE_BYTES = 2**20
"""The longest SSE line read (1 MiB). One token's event is about 200 bytes; even a server
that sends a whole 8192-token reply as one event stays far below."""
MAX_EVENT_BYTES = 2**20
"""The most data one event may gather over its ``data:`` lines (1 MiB)."""


_LINE_END = re.compile(rb"\r\n|\r|\n")


class RemoteError(GemmaChatError):
    """The server could not be reached or did not answer properly (one line)."""


class RemoteCancelled(GemmaChatError):
    """The user stopped a request (Ctrl+C) before the server answered (exit 130)."""

    exit_code = 130


@dataclass(frozen=True)
class TextChunk:
    """One streamed piece of a reply.

    Attributes:
        text: New reply text (may be empty).
        finish_reason: The server's reason the reply ended, on the last chunk.
        usage: The server's token counts (``prompt_tokens``, ``completion_tokens``...).
    """

    text: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


def one_line(text: str, limit: int = 200) -> str:
    """A server's text for an error message: one line, controls shown (the sanitizer's
    :func:`~gemma_chat.sanitize.one_line`), at most ``limit`` characters."""
    line = sanitize.one_line(text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def sse_lines(chunks: Iterable[bytes], source: str, limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Split a byte stream into SSE lines (ended by CRLF, LF or CR), each decoded as UTF-8.

    Lines are split on bytes, so a multi-byte character is never cut in two.

    Raises:
        RemoteError: A line is longer than ``limit`` bytes (named after ``source``).
    """
    pending = bytearray()  # the unfinished line; only each new chunk is scanned
    held_cr = False  # the last chunk ended in CR: an LF opening the next one belongs to it
    for chunk in chunks:
        if not chunk:
            continue
        if held_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        held_cr = chunk.endswith(b"\r")
        start = 0
        for match in _LINE_END.finditer(chunk):
            pending += chunk[start : match.start()]
            yield pending.decode("utf-8", errors="replace")
            pending.clear()
            start = match.end()
        pending += chunk[start:]
        if len(pending) > limit:
            raise RemoteError(
                f"{source} sent an SSE line longer than {limit // 1024} KiB; stopped reading"
            )
    if pending:
        yield pending.decode("utf-8", errors="replace")


def sse_data(lines: Iterable[str], source: str, limit: int = MAX_EVENT_BYTES) -> Iterator[str]:
    """The data of each server-sent event (multi-line data joined by newlines).

    Raises:
        RemoteError: One event's data grows past ``limit`` bytes.
    """
    data: list[str] = []
    size = 0
    event = ""
    for line in lines:
        if not line:
            if data:
                joined = "\n".join(data)
                yield json.dumps({"error": joined}) if event == "error" else joined
            data, event, size = [], "", 0
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            size += len(value) + 1
            if size > limit:
                raise RemoteError(
                    f"{source} sent an SSE event larger than {limit // 1024} KiB; stopped reading"
                )
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield "\n".join(data)


def parse_chunk(payload: Any, base: str) -> TextChunk:
    if not isinstance(payload, dict):
        raise RemoteError(f"malformed SSE from {base}: not a JSON object")
    if "error" in payload:
        message = payload_message(payload) or "unknown error"
        raise RemoteError(f"{base} reported an error mid-reply: {one_line(message)}")
    choices = payload.get("choices") or []
    text, finish = "", None
    if choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):  # chat streaming
            text = delta.get("content") or ""
        elif isinstance(choice.get("message"), dict):  # chat, not streamed
            text = choice["message"].get("content") or ""
        else:
            text = choice.get("text") or ""
        finish = choice.get("finish_reason")
    usage = payload.get("usage")
    if not isinstance(text, str):
        raise RemoteError(f"malformed SSE from {base}: the text is not a string")
    return TextChunk(text, finish, usage if isinstance(usage, dict) else None)


def payload_message(payload: Any) -> str | None:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            return str(message) if message else None
        if isinstance(error, str):
            return error
        detail = payload.get("detail")
        return str(detail) if detail else None
    return None
