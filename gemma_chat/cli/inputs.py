"""Reading the user's input: attached files (``-f``), the question argument and piped stdin.

Layout when several are given (documented in the README): each file as a labelled block
(see :mod:`gemma_chat.chat.attachments`), then the piped text, then a blank line, then
the question, all in one user turn. This is the order ``llm`` uses,
and it puts the instruction right before the model's turn.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gemma_chat.chat.attachments import (
    TEXT_LIMIT_BYTES,
    Attachment,
    compose_message,
    decode_text,
    read_attachment,
)
from gemma_chat.errors import UsageError

STDIN_LIMIT_BYTES = TEXT_LIMIT_BYTES
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
    return decode_text(data, "stdin", "pipe")


def combine(question: str | None, piped: str | None, attachments: Sequence[Attachment] = ()) -> str:
    """Build the user message from the attached files, the piped text and the question,
    in that order (see :func:`~gemma_chat.chat.attachments.compose_message`).

    Raises:
        UsageError: All are missing or blank.
    """
    message = compose_message(attachments, piped, question)
    if message:
        return message
    if piped is not None:
        raise UsageError("empty prompt: stdin was empty and no question was given")
    raise UsageError('empty prompt: give a question, e.g. gemma-chat ask "why is the sky blue?"')


@dataclass(frozen=True)
class UserInput:
    """What one ``ask`` was given: files (``-f``), piped text and a question.

    Attributes:
        attachments: The files, in the order given.
        piped: The piped text (None when stdin is a terminal).
        question: The question argument.
    """

    attachments: tuple[Attachment, ...]
    piped: str | None
    question: str | None

    @property
    def message(self) -> str:
        """The one user message (raises UsageError when it would be empty)."""
        return combine(self.question, self.piped, self.attachments)


def read_input(question: str | None, files: Sequence[str | Path] = ()) -> UserInput:
    """Read the files (first: a missing file fails before stdin is read), then stdin.

    Raises:
        UsageError: A file or stdin is not text, too large or unreadable.
    """
    attachments = tuple(read_attachment(path) for path in files)
    return UserInput(attachments, read_piped(), question)
