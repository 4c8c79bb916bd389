"""The wire format of a streamed reply: server-sent events, the chunks in them, the
errors servers report, and closing a stream the moment the user cancels."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gemma_chat import sanitize
from gemma_chat.errors import GemmaChatError

CANCEL_POLL_S = 0.05
"""How often a streaming reply checks the cancel event while the server is silent."""


class RemoteError(GemmaChatError):
    """The server could not be reached or did not answer properly (one line)."""


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


class CancelWatcher:
    """Shuts the response's socket down when the cancel event is set.

    A blocking read then returns at once, however long the server stays silent.
    """

    def __init__(self, response: Any, cancel: threading.Event) -> None:
        self._response, self._cancel = response, cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(CANCEL_POLL_S):
                stream = self._response.extensions.get("network_stream")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if sock is not None:
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> None:
        self._done.set()


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    event = ""
    for line in lines:
        if not line:
            if data:
                joined = "\n".join(data)
                yield json.dumps({"error": joined}) if event == "error" else joined
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
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
