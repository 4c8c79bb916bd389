"""Where a backlog of streamed Markdown is cut into slices (issue 16, smooth streaming).

A Markdown widget re-parses its last block on each append: a paragraph is updated in
place, a list or a code block is built again whole. ``slice_end`` cuts inside a
paragraph or a heading when one is within reach, keeps what an append builds within a
cost, and always moves on.
"""

from __future__ import annotations

import re

from gemma_chat.chat.markdown_blocks import ITEM_COST, slice_end, split_finished

PARA = "A paragraph that says something useful about the reply, long enough to wrap."
LIST = "\n".join(f"- item {i} of a list" for i in range(5))
CODE = "```python\ndef f(x):\n    return x\n```"


def _section(n: int) -> str:
    return "\n\n".join(
        [
            f"## {n}. A heading",
            PARA,
            LIST,
            "\n".join(f"{i}. numbered {i}" for i in range(1, 4)),
            CODE,
            "| a | b |\n|---|---|\n| 1 | 2 |",
            f"> a quote {n}",
            PARA,
        ]
    )


TEXT = "\n\n".join(_section(n) for n in range(1, 12))


def _line_at(text: str, cut: int) -> str:
    """The line the last character before ``cut`` is on."""
    start = text.rfind("\n", 0, cut - 1) + 1
    end = text.find("\n", cut - 1)
    return text[start : end if end >= 0 else len(text)]


def _slices(text: str, max_chars: int, max_cost: int) -> list[str]:
    shown, out, rest = "", [], text
    while rest:
        size = slice_end(shown, rest, max_chars, max_cost)
        assert 1 <= size <= max(max_chars, 1)
        out.append(rest[:size])
        shown, rest = shown + rest[:size], rest[size:]
    return out


def test_a_backlog_that_fits_is_shown_whole() -> None:
    assert slice_end("", TEXT, len(TEXT), 10_000) == len(TEXT)
    assert slice_end(PARA, "\n\n" + LIST, 1024, 100) == len(LIST) + 2
    assert slice_end("", "", 1024, 16) == 0


def test_every_slice_ends_in_a_paragraph_or_a_heading() -> None:
    slices = _slices(TEXT, 333, 1000)
    assert "".join(slices) == TEXT
    assert len(slices) > 8
    end = 0
    for piece in slices[:-1]:
        end += len(piece)
        line = _line_at(TEXT, end)
        assert line.strip(), end  # not on a blank line after a block
        assert line.startswith(("A paragraph", "## ")), (end, line)


def test_a_cut_is_not_made_just_after_a_list_but_in_what_follows() -> None:
    text = PARA + "\n\n" + LIST + "\n\nAfter the list."
    after = text.index("After")
    # Reaching just past the list: the cut goes back into the paragraph before it.
    assert slice_end("", text, after, 1000) == len(PARA)
    # Reaching into the next paragraph: the list and a first part of it.
    assert slice_end("", text, after + 3, 1000) == after + 3


def test_many_list_items_are_cut_by_their_cost() -> None:
    items = "".join(f"- {i}\n" for i in range(200))
    size = slice_end("Intro.\n\n", items, 1024, 5 * ITEM_COST)
    assert 1 <= items[:size].count("- ") <= 5


def test_an_open_list_over_the_budget_is_finished_at_once() -> None:
    # Shown so far ends inside a long list: any append builds it again, so the rest of
    # it goes in one slice (with a first part of what follows), not an item a slice.
    shown = "Intro.\n\n" + "".join(f"- {i}\n" for i in range(20))
    queued = "- 20\n- 21\n- 22\n\nAfter the list.\n\n" + PARA * 5
    size = slice_end(shown, queued, 1024, 2 * ITEM_COST)
    assert queued[:size] == "- 20\n- 21\n- 22\n\nAfter the list."
    # Within the budget, the cost of building it again counts.
    shown = "Intro.\n\n- a\n- b"
    assert slice_end(shown, "\n- c\n\nText " + PARA * 5, 1024, 3 * ITEM_COST) == len("\n- c")


def test_long_text_counts_against_the_budget() -> None:
    # Paragraphs of 76 characters, 78 with the blank line: 1 each, and 1 per 100 chars.
    prose = "\n\n".join([PARA] * 40)
    assert prose[: slice_end("", prose, 4096, 10, chars_per_cost=100)].count(PARA) == 6
    # One long paragraph is cut inside, where the budget runs out.
    prose = " ".join([PARA] * 40)
    assert slice_end("", prose, 4096, 10, chars_per_cost=100) == 999
    # After a list (built again: 9) and the paragraph's own 1, 99 characters are left.
    assert slice_end("- a\n- b\n\n", prose, 4096, 10, chars_per_cost=100) == 99


def test_it_always_moves_on() -> None:
    # A first line dearer than the whole budget: still at least that line, never 0.
    table = "| " + " | ".join("x" * 3 for _ in range(40)) + " |\n"
    assert slice_end("", table * 3, 1024, 2) >= 1
    for max_chars, max_cost in ((1, 1), (7, 1), (50, 3), (1024, 48)):
        assert "".join(_slices(TEXT[:3000], max_chars, max_cost)) == TEXT[:3000]


def test_only_the_head_of_a_huge_backlog_is_read() -> None:
    # A cut is found in a long paragraph without reading what lies beyond max_chars.
    huge = "word " * 200_000
    assert slice_end("", huge, 1024, 48) == 1024
    assert re.fullmatch(r"(word )+", huge[:1025])


def test_parts_spaced_apart_are_not_cut_before_a_quote_or_code() -> None:
    # Two widgets do not overlap the margins of a quote, a code block or a heading: no
    # cut there (a "#" not followed by a space is a paragraph's text).
    for block in ("> a quote", "```\ncode", "---\nmore", "# Title", "## A heading", "###\nx"):
        text = f"A paragraph.\n\n{block}"
        assert split_finished(text) == ("A paragraph.\n\n", block)
        assert split_finished(text, spaced=True) == ("", text)
    text = "A paragraph.\n\n## A heading\n\n| a |\n|---|\n\nMore"
    assert split_finished(text, spaced=True) == split_finished(text)
    text = "A paragraph.\n\n#hashtag is text"
    assert split_finished(text, spaced=True) == ("A paragraph.\n\n", "#hashtag is text")
