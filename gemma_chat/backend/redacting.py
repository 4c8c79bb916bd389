"""The API key kept out of a remote backend's errors and streamed reply, with one
:class:`~gemma_chat.backend.redact.Redactor`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from gemma_chat.backend.redact import Redactor
from gemma_chat.backend.sse import RemoteError, TextChunk
from gemma_chat.errors import GemmaChatError


@contextmanager
def redacting_errors(redactor: Redactor) -> Iterator[None]:
    """Redact the API key from any error raised inside: the one place where server text
    in errors (bodies, redirect targets, model ids, SSE excerpts) is made safe."""
    try:
        yield
    except GemmaChatError as error:
        error.args = tuple(redactor.text(a) if isinstance(a, str) else a for a in error.args)
        raise


def redacted_chunks(redactor: Redactor, chunks: Iterator[TextChunk]) -> Iterator[TextChunk]:
    """The reply with the API key redacted, also when a chunk boundary splits it."""
    stream = redactor.stream()
    try:
        for chunk in chunks:
            text = stream.feed(chunk.text)
            if chunk.finish_reason is not None:
                text += stream.flush()
            yield replace(chunk, text=text) if text != chunk.text else chunk
    except RemoteError:
        tail = stream.flush()  # what arrived is kept, also when the stream fails
        if tail:
            yield TextChunk(tail)
        raise
    else:
        tail = stream.flush()
        if tail:
            yield TextChunk(tail)
    finally:
        chunks.close()  # type: ignore[attr-defined]
