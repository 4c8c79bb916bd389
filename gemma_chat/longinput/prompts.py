"""The prompts of a map-reduce answer (documented in the README, "Inputs larger than the
context").

Map, one call per chunk: the chunk as a labelled block (``part i of N of FILE``, then
its text in a fence it cannot close), then the question, then how to answer::

    part 2 of 9 of notes.md
    ```
    {the part's text}
    ```

    {question}
    Answer from this part alone; if it holds nothing that helps, say so in one line.

Reduce: the notes, each under its part's title, then the question (the last reduce) or
the request to combine them (when the notes need more than one call)::

    Notes on notes.md, one for each part:

    part 1 of 9 of notes.md:
    {note}

    part 2 of 9 of notes.md:
    {note}

    Answer from these notes: {question}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gemma_chat.chat.attachments import file_block
from gemma_chat.longinput.split import Chunk

DEFAULT_QUESTION = "Summarise this."
"""The question when only files or piped text were given."""

MAP_INSTRUCTION = "Answer from this part alone; if it holds nothing that helps, say so in one line."
NO_NOTE = "(nothing)"
"""A note the model left empty."""


@dataclass(frozen=True)
class Note:
    """What one step produced for the next.

    Attributes:
        title: What it covers (``part 2 of 9 of notes.md``, ``notes on parts 1-4 of 9``).
        text: The model's note.
        span: The parts it covers, numbered across all sources from 1.
    """

    title: str
    text: str
    span: tuple[int, int] = (0, 0)


def map_prompt(chunk: Chunk, question: str) -> str:
    """The map call's user message for ``chunk``."""
    return f"{file_block(chunk.title, chunk.text)}\n\n{question}\n{MAP_INSTRUCTION}"


def reduce_prompt(notes: Sequence[Note], labels: Sequence[str], question: str, final: bool) -> str:
    """The reduce call's user message: the notes, then the question (``final``) or the
    request to combine them into one note."""
    body = "\n\n".join(f"{note.title}:\n{note.text.strip() or NO_NOTE}" for note in notes)
    ask = (
        f"Answer from these notes: {question}"
        if final
        else "Combine these notes into one set of notes that keeps everything that helps "
        f"answer this question: {question}"
    )
    return f"Notes on {', '.join(labels)}, one for each part:\n\n{body}\n\n{ask}"
