"""Splitting a long input into chunks that fit the context, on paragraph or line
boundaries, counted with the model's own tokenizer.

A chunk is built from whole paragraphs (text between blank lines) while they fit. A
paragraph too large for a chunk is split at its lines, and a single line too large (a
minified file) at the last space before the limit, or anywhere when it has none. Every
chunk's size is checked by tokenizing the chunk itself, so boundary effects of the
tokenizer can never push a prompt over the context.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Count = Callable[[str], int]
"""Tokens a text takes (the model's tokenizer; an estimate for a remote server)."""

_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Source:
    """One input to answer over: an attached file or the piped text.

    Attributes:
        label: How prompts and progress name it (a path, or ``stdin``).
        text: Its text.
    """

    label: str
    text: str


@dataclass(frozen=True)
class Chunk:
    """One part of a source, small enough for one model call.

    Attributes:
        label: The source's label.
        index: 1-based position among the source's parts.
        total: How many parts the source was split into.
        text: The part's text.
        tokens: Its token count.
    """

    label: str
    index: int
    total: int
    text: str
    tokens: int

    @property
    def title(self) -> str:
        """``part i of N of LABEL``."""
        return f"part {self.index} of {self.total} of {self.label}"


def _units(text: str, pattern: re.Pattern[str] | None) -> list[str]:
    """Split ``text`` after each paragraph end (``pattern``) or each newline (None),
    keeping the separators, so that joining the units gives the text back."""
    if pattern is None:
        return text.splitlines(keepends=True)
    units, start = [], 0
    for match in pattern.finditer(text):
        units.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        units.append(text[start:])
    return units


def _cut_line(line: str, budget: int, count: Count) -> list[str]:
    """Cut one line that is too large into pieces of at most ``budget`` tokens, at the
    last space before the limit when there is one."""
    pieces = []
    while line:
        if count(line) <= budget:
            pieces.append(line)
            break
        low, high = 1, len(line)  # the longest prefix that fits: binary search
        while low < high:
            mid = (low + high + 1) // 2
            if count(line[:mid]) <= budget:
                low = mid
            else:
                high = mid - 1
        space = line.rfind(" ", 0, low)
        end = space + 1 if space > low // 2 else low
        pieces.append(line[:end])
        line = line[end:]
    return pieces


def split_text(text: str, budget: int, count: Count) -> list[str]:
    """Split ``text`` into pieces of at most ``budget`` tokens each, on paragraph
    boundaries where possible, then lines, then spaces.

    Raises:
        ValueError: ``budget`` is less than 1.
    """
    if budget < 1:
        raise ValueError("the budget must be at least one token")
    return [piece for piece in _pack(text, budget, count, _PARAGRAPH_END) if piece.strip()]


def _pack(text: str, budget: int, count: Count, pattern: re.Pattern[str] | None) -> list[str]:
    """Pack units greedily by the sum of their counts (each unit is tokenized once), then
    check each chunk's own count and move units to the next chunk while it is over."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    pending = deque(_units(text, pattern))
    while pending or current:
        if not pending:  # the end: settling may give units back
            chunks.append(_settle(current, pending, budget, count))
            current, size = [], 0
            continue
        unit = pending.popleft()
        tokens = count(unit)
        if current and size + tokens > budget:
            pending.appendleft(unit)  # before settling, which may give units back
            chunks.append(_settle(current, pending, budget, count))
            current, size = [], 0
            continue
        if tokens <= budget:
            current.append(unit)
            size += tokens
        elif pattern is not None:  # a paragraph too large: by lines
            chunks += _pack(unit, budget, count, None)
        else:  # one line too large: at spaces
            chunks += _cut_line(unit, budget, count)
    return chunks


def _settle(units: list[str], pending: deque[str], budget: int, count: Count) -> str:
    """Join a chunk's units; while the joined text counts over the budget (the
    tokenizer merged across a boundary), give its last unit back to ``pending``."""
    while len(units) > 1 and count("".join(units)) > budget:
        pending.appendleft(units.pop())
    return "".join(units)


def split_sources(sources: Sequence[Source], budget: int, count: Count) -> list[Chunk]:
    """Split each source into chunks of at most ``budget`` tokens (a blank source
    gives none), numbered per source."""
    chunks: list[Chunk] = []
    for source in sources:
        pieces = split_text(source.text, budget, count)
        for index, piece in enumerate(pieces, 1):
            text = piece.strip("\n")
            chunks.append(Chunk(source.label, index, len(pieces), text, count(text)))
    return chunks
