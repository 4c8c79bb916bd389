"""Writing a streamed reply to stdout: plain text, or Markdown on a terminal.

Markdown mode prints each finished block (text up to a blank line outside a code fence)
once, rendered by rich, and keeps only the block still being written in a ``Live``
region. Re-rendering the whole reply on every token would cost time quadratic in its
length; this costs one render per block plus a throttled render of the open block.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


class PlainWriter:
    """Writes deltas as they come. Used when stdout is not a terminal, or ``--plain``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._last = ""

    def write(self, text: str) -> None:
        """Write a delta and flush, so pipes see the reply as it streams."""
        self._stream.write(text)
        self._stream.flush()
        self._last = text[-1:] or self._last

    def close(self) -> None:
        """End the reply with exactly one newline."""
        if self._last and self._last != "\n":
            self._stream.write("\n")
        self._stream.flush()


def split_finished(text: str) -> tuple[str, str]:
    """Split Markdown into (finished blocks, open block).

    A block is finished at a blank line that is not inside a code fence.
    """
    cut = 0
    for match in re.finditer(r"\n[ \t]*\n", text):
        before = text[: match.start()]
        if len(_FENCE.findall(before)) % 2 == 0:
            cut = match.end()
    return text[:cut], text[cut:]


class MarkdownWriter:
    """Renders the reply as Markdown on a terminal, block by block."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._live = Live(
            console=self._console,
            refresh_per_second=12,
            transient=True,
            vertical_overflow="visible",
        )
        self._pending = ""
        self._live.start()

    def write(self, text: str) -> None:
        """Add a delta; print finished blocks and refresh the open one."""
        from rich.markdown import Markdown

        self._pending += text
        finished, self._pending = split_finished(self._pending)
        if finished:
            self._live.update("", refresh=True)
            self._console.print(Markdown(finished.strip("\n")))
            self._console.print()
        self._live.update(Markdown(self._pending))

    def close(self) -> None:
        """Print the last block and stop the live region."""
        from rich.markdown import Markdown

        self._live.update("", refresh=True)
        self._live.stop()
        if self._pending.strip():
            self._console.print(Markdown(self._pending.strip("\n")))
        self._pending = ""
