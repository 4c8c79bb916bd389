"""Attached files: reading them as text, and the labelled block each becomes in a message.

Layout (documented in the README, shown exactly by ``gemma-chat prompt -f``): each file
is its path on a line, then its text in a fence of backticks longer than any run of
backticks inside the file, so nothing in the file can close the fence::

    notes/todo.md
    ```
    {the file's text}
    ```

A user message is the files' blocks, then the piped text, then the question, separated
by blank lines (the instruction last, right before the model's turn).

Files are read like stdin: at most :data:`TEXT_LIMIT_BYTES`, UTF-8 text only (binary
data and invalid UTF-8 are refused), a BOM dropped and CRLF made LF. Every refusal is a
:class:`~gemma_chat.errors.UsageError` (one line, exit 2).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gemma_chat.errors import UsageError
from gemma_chat.files import FileTooLarge, NotRegularFile, read_regular_file
from gemma_chat.units import format_bytes

TEXT_LIMIT_BYTES = 16 * 1024 * 1024
"""The most bytes of text taken from stdin or from one file."""

_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True)
class Attachment:
    """One attached file.

    Attributes:
        name: The path as the user gave it (shown to the model and in the history).
        text: Its text (BOM dropped, CRLF made LF).
        size: Its size in bytes, as read.
    """

    name: str
    text: str
    size: int

    def block(self) -> str:
        """The labelled block this file becomes in a message."""
        return file_block(self.name, self.text)


def fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text`` (at least three)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(3, longest + 1)


def file_block(name: str, text: str) -> str:
    """``name`` on a line, then ``text`` in a fence it cannot close."""
    fence = fence_for(text)
    body = text.rstrip("\n")
    return f"{name}\n{fence}\n{body}\n{fence}" if body else f"{name}\n{fence}\n{fence}"


def compose_message(
    attachments: Sequence[Attachment], piped: str | None, question: str | None
) -> str:
    """The user message: the files' blocks, then the piped text, then the question.

    Blank piped text or a blank question is left out; the result may be empty.
    """
    parts = [attachment.block() for attachment in attachments]
    parts += [part.strip() for part in (piped, question) if part and part.strip()]
    return "\n\n".join(parts)


def looks_binary(data: bytes) -> bool:
    """A NUL byte anywhere, or many control characters in the first 8 KiB."""
    if b"\x00" in data:
        return True
    head = data[:8192]
    if not head:
        return False
    controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return controls / len(head) > 0.1


def decode_text(data: bytes, what: str, verb: str) -> str:
    """Decode input bytes as UTF-8 text, refusing binary data and bad bytes.

    Args:
        data: The bytes (at most :data:`TEXT_LIMIT_BYTES` + 1 of them).
        what: How the messages name the input (``stdin``, a file's path).
        verb: How the user gives such input (``pipe``, ``attach``), for the hints.

    Raises:
        UsageError: The input is too large, binary, or not UTF-8.
    """
    if len(data) > TEXT_LIMIT_BYTES:
        raise UsageError(
            f"{what} is larger than {format_bytes(TEXT_LIMIT_BYTES)}; {verb} a smaller text"
        )
    if looks_binary(data):
        raise UsageError(f"{what} looks like binary data, not text; {verb} a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not valid UTF-8 (bad byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); convert it first, e.g. with iconv -f latin1 -t utf-8"
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def read_attachment(path: str | os.PathLike[str]) -> Attachment:
    """Read a file to attach: a regular file of UTF-8 text.

    Raises:
        UsageError: The file is missing, a directory (or a FIFO, a device), unreadable,
            too large, binary or not UTF-8; the message names it.
    """
    name = os.fspath(path)
    try:
        data = read_regular_file(Path(name).expanduser(), TEXT_LIMIT_BYTES)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{name} is a directory, not a text file") from None
    except NotRegularFile:
        kind = "a directory" if Path(name).expanduser().is_dir() else "not a regular file"
        raise UsageError(f"{name} is {kind}, not a text file") from None
    except FileTooLarge:
        raise UsageError(
            f"{name} is larger than {format_bytes(TEXT_LIMIT_BYTES)}; attach a smaller text"
        ) from None
    except PermissionError:
        raise UsageError(f"{name} cannot be read: permission denied") from None
    except OSError as exc:
        raise UsageError(f"{name} cannot be read: {exc.strerror or exc}") from None
    text = decode_text(data, name, "attach")
    return Attachment(name, text, len(data))
