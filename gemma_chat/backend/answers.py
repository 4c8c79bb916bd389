"""Reading a server's answers within their limits: a whole JSON body, the first line of
an error, and a streamed reply's events (the caps and deadlines are
:mod:`gemma_chat.backend.bounded`'s; the SSE format is :mod:`gemma_chat.backend.sse`'s).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from gemma_chat.backend import bounded
from gemma_chat.backend.sse import (
    RemoteCancelled,
    RemoteError,
    TextChunk,
    one_line,
    parse_chunk,
    payload_message,
    sse_data,
    sse_lines,
)


@dataclass(frozen=True)
class AnswerReader:
    """Reads the answers of the server at ``base_url``.

    Attributes:
        base_url: The server's base URL (named in every error).
        timeout_s: The longest silence, and the limit for a whole non-streamed answer.
        reply_timeout_s: The limit for a whole streamed reply.
    """

    base_url: str
    timeout_s: float
    reply_timeout_s: float

    def too_slow(self, path: str) -> str:
        """The error for a request that outlived its deadline."""
        if path in ("completions", "chat/completions"):
            return (
                f"the reply from {self.base_url} took longer than {self.reply_timeout_s:g} s "
                "(reply_timeout)"
            )
        return f"{self.base_url}/{path} did not finish answering within {self.timeout_s:g} s"

    def body(
        self,
        response: Any,
        limit: int,
        where: str,
        cancel: threading.Event | None,
        deadline: float,
    ) -> bytes:
        """A whole (non-streamed) body, at most ``limit`` bytes, by ``deadline``.

        Raises:
            RemoteError: Too large, too slow, or the connection broke.
            RemoteCancelled: ``cancel`` was set.
        """
        watcher = bounded.Watcher(response, cancel, deadline)
        parts: list[bytes] = []
        try:
            parts.extend(bounded.capped(response.iter_bytes(), limit, where))
        except httpx.HTTPError:
            if watcher.check() is None:
                raise RemoteError(f"{where}: the answer was cut off") from None
        finally:
            watcher.stop()
            response.close()
        if watcher.fired == "cancel" or (cancel is not None and cancel.is_set()):
            raise RemoteCancelled(f"cancelled while waiting for {where}")
        if watcher.fired == "deadline":
            raise RemoteError(f"{where} did not finish answering within {self.timeout_s:g} s")
        return b"".join(parts)

    def error_text(self, response: Any, cancel: threading.Event | None, deadline: float) -> str:
        """The first line of an error answer (only its first 64 KiB are read)."""
        watcher = bounded.Watcher(response, cancel, deadline)
        raw = b""
        try:
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= bounded.MAX_ERROR_BYTES:
                    break
        except httpx.HTTPError:
            pass
        finally:
            watcher.stop()
            response.close()
        text = raw[: bounded.MAX_ERROR_BYTES].decode("utf-8", errors="replace")
        try:
            payload = json.loads(text)
        except ValueError:
            return one_line(text) or response.reason_phrase
        return one_line(payload_message(payload) or text)

    def events(
        self,
        response: Any,
        cancel: threading.Event | None,
        deadline: float,
        parse: Callable[[Any, str], Any] = parse_chunk,
    ) -> Iterator[TextChunk]:
        """A streamed reply's chunks (or a non-streamed answer's one chunk), each event
        read by ``parse`` (an OpenAI chunk unless told otherwise; it needs a
        ``finish_reason``).

        Raises:
            RemoteError: A broken, malformed, oversized or too slow stream; nothing is
                raised for a cancel, the chunks just end.
        """
        base = self.base_url
        watcher = bounded.Watcher(response, cancel, deadline)
        finished = received = False
        try:
            content_type = response.headers.get("content-type", "")
            if "application/json" in content_type:  # a server that does not stream
                yield parse(self._json_body(response, watcher), base)
                return
            if "text/event-stream" not in content_type:
                raise RemoteError(f"{base} did not answer with SSE (content-type {content_type!r})")
            raw = bounded.capped(
                response.iter_bytes(), bounded.MAX_STREAM_BYTES, f"the reply from {base}"
            )
            for data in sse_data(sse_lines(raw, base), base):
                if watcher.check() is not None:
                    break
                if data == "[DONE]":
                    return
                try:
                    payload = json.loads(data)
                except ValueError:
                    raise RemoteError(
                        f"malformed SSE from {base}: {one_line(data, 80)!r}"
                    ) from None
                chunk = parse(payload, base)
                received = True
                finished = finished or chunk.finish_reason is not None
                yield chunk
            self._stream_end(watcher, finished, received)
        except httpx.TimeoutException:
            if watcher.check() is None:
                raise RemoteError(
                    f"{base} stopped sending for {self.timeout_s:g} s (read timeout)"
                ) from None
            self._stream_end(watcher, finished, received)
        except httpx.HTTPError as error:
            if watcher.check() is None and not finished:
                raise RemoteError(
                    f"the reply from {base} was cut off mid-stream ({one_line(str(error), 80)})"
                ) from None
            self._stream_end(watcher, finished, received)
        finally:
            watcher.stop()
            response.close()

    def _stream_end(self, watcher: bounded.Watcher, finished: bool, received: bool) -> None:
        """Raise for a stream that ended before the reply did (a cancel is not an error)."""
        base = self.base_url
        reason = watcher.check()
        if reason == "cancel":
            return
        if reason == "deadline":
            raise RemoteError(self.too_slow("completions"))
        if finished:
            return
        if not received:
            raise RemoteError(
                f"{base} closed the stream without sending anything; the prompt may "
                "exceed the server's context (set ctx to the server's context size)"
            )
        raise RemoteError(f"the reply from {base} was cut off mid-stream")

    def _json_body(self, response: Any, watcher: bounded.Watcher) -> Any:
        where = self.base_url
        try:
            raw = b"".join(bounded.capped(response.iter_bytes(), bounded.MAX_BODY_BYTES, where))
        except httpx.HTTPError:
            if watcher.check() == "deadline":
                raise RemoteError(self.too_slow("completions")) from None
            raise RemoteError(f"the reply from {where} was cut off") from None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeError):
            raise RemoteError(f"{self.base_url} sent a malformed JSON answer") from None
