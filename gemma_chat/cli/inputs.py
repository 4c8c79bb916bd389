"""Reading the user's input: the question argument and piped stdin.

Layout when both are given (documented in the README): the piped text comes first, then
a blank line, then the question, all in one user turn. This is the order ``llm`` uses,
and it puts the instruction right before the model's turn.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from gemma_chat.errors import UsageError
from gemma_chat.units import format_bytes

STDIN_LIMIT_BYTES = 16 * 1024 * 1024
"""Far beyond any Gemma context (8192 tokens is roughly 32 KB of text)."""


def stdin_is_piped(stream: BinaryIO | None = None) -> bool:
    """Whether stdin carries input (a pipe or file) rather than a terminal."""
    if stream is None:
        if sys.stdin is None:
            return False
        stream = sys.stdin.buffer
    try:
        return not stream.isatty()
    except (ValueError, OSError):
        return False


def read_piped(stream: BinaryIO | None = None) -> str | None:
    """Read and check piped stdin.

    Returns:
        The text, or None when stdin is a terminal.

    Raises:
        UsageError: The input is binary, not UTF-8, or too large.
    """
    if not stdin_is_piped(stream):
        return None
    stream = stream if stream is not None else sys.stdin.buffer
    data = stream.read(STDIN_LIMIT_BYTES + 1)
    return decode_input(data)


def decode_input(data: bytes) -> str:
    """Decode piped bytes as UTF-8 text, refusing binary data with a clear message."""
    if len(data) > STDIN_LIMIT_BYTES:
        raise UsageError(
            f"stdin is larger than {format_bytes(STDIN_LIMIT_BYTES)}; pipe a smaller text"
        )
    if looks_binary(data):
        raise UsageError("stdin looks like binary data, not text; pipe a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"stdin is not valid UTF-8 (bad byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); convert it first, e.g. with iconv -f latin1 -t utf-8"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def looks_binary(data: bytes) -> bool:
    """A NUL byte anywhere, or many control characters in the first 8 KiB."""
    if b"\x00" in data:
        return True
    head = data[:8192]
    if not head:
        return False
    controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return controls / len(head) > 0.1


def combine(question: str | None, piped: str | None) -> str:
    """Build the user message from the question and the piped text.

    Raises:
        UsageError: Both are missing or blank.
    """
    was_piped = piped is not None
    question = (question or "").strip()
    piped = (piped or "").strip()
    if piped and question:
        return f"{piped}\n\n{question}"
    if piped or question:
        return piped or question
    if was_piped:
        raise UsageError("empty prompt: stdin was empty and no question was given")
    raise UsageError('empty prompt: give a question, e.g. gemma-chat ask "why is the sky blue?"')
