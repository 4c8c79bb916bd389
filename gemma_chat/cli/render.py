"""Writing a streamed reply to stdout: plain text, or Markdown on a terminal.

Markdown mode prints each finished block (text up to a blank line outside a code fence)
once, rendered by rich, and keeps only the block still being written in a ``Live``
region. Re-rendering the whole reply on every token would cost time quadratic in its
length; this costs one render per block plus a throttled render of the open block.

Model text is untrusted: both writers pass it through a
:class:`~gemma_chat.sanitize.StreamSanitizer`, so an escape sequence in a reply is shown
(``␛]52;…``) and never obeyed. Only ``ask --raw`` into a pipe or file writes it unchanged.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from gemma_chat.chat.markdown_blocks import split_finished
from gemma_chat.sanitize import StreamSanitizer

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult


class PlainWriter:
    """Writes deltas as they come. Used when stdout is not a terminal, or ``--plain``.

    Args:
        stream: Where to write (default stdout).
        raw: Write the model's text unchanged (``ask --raw``, never on a terminal).
    """

    def __init__(self, stream: TextIO | None = None, *, raw: bool = False) -> None:
        self._stream = stream or sys.stdout
        self._last = ""
        self._sanitizer = None if raw else StreamSanitizer()

    def write(self, text: str) -> None:
        """Write a delta and flush, so pipes see the reply as it streams."""
        if self._sanitizer is not None:
            text = self._sanitizer.feed(text)
        self._stream.write(text)
        self._stream.flush()
        self._last = text[-1:] or self._last

    def close(self) -> None:
        """End the reply with exactly one newline."""
        if self._sanitizer is not None:
            held = self._sanitizer.finish()
            if held:
                self._stream.write(held)
                self._last = held[-1]
        if self._last and self._last != "\n":
            self._stream.write("\n")
        self._stream.flush()


class _Tail:
    """The open block as Markdown, cropped to its last lines that fit the terminal.

    Rich's ``Live`` cannot redraw content taller than the terminal without leaving
    copies in the scrollback, so while a block streams only its tail is shown; the whole
    block is printed once when it is finished.
    """

    def __init__(self) -> None:
        self.text = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.markdown import Markdown
        from rich.segment import Segment

        if not self.text.strip():
            return
        lines = console.render_lines(Markdown(self.text, hyperlinks=False), options, pad=False)
        for line in lines[-max(1, console.height - 2) :]:
            yield from line
            yield Segment.line()


class MarkdownWriter:
    """Renders the reply as Markdown on a terminal, block by block."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._sanitizer = StreamSanitizer()
        self._tail = _Tail()
        self._printed = False
        # get_renderable: the open block is parsed only when Live refreshes (12 times a
        # second), not on every token.
        self._live = Live(
            console=self._console,
            get_renderable=lambda: self._tail,
            refresh_per_second=12,
            transient=True,
            vertical_overflow="crop",
        )
        self._live.start()

    def write(self, text: str) -> None:
        """Add a delta; print the blocks it finished."""
        from rich.markdown import Markdown

        text = self._sanitizer.feed(text)
        self._tail.text += text
        if "\n" not in text:  # a block can only finish when a line ends
            return
        finished, self._tail.text = split_finished(self._tail.text)
        if finished.strip():
            self._live.refresh()
            self._print(Markdown(finished.strip("\n"), hyperlinks=False))

    def close(self) -> None:
        """Print the last block and stop the live region."""
        from rich.markdown import Markdown

        pending, self._tail.text = self._tail.text + self._sanitizer.finish(), ""
        self._live.stop()
        if pending.strip():
            self._print(Markdown(pending.strip("\n"), hyperlinks=False))

    def _print(self, markdown: object) -> None:
        # Rich puts a blank line between blocks of one document; keep that across prints.
        if self._printed:
            self._console.print()
        self._console.print(markdown)
        self._printed = True
