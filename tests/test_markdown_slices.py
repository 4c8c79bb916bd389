"""Where a backlog of streamed Markdown is cut into slices (issue 16, smooth streaming).

A Markdown widget re-parses its last block on each append: a paragraph is updated in
place, a list grows by its new items (the reply's ``StreamMarkdown``), a code block is
built again whole. ``slice_end`` cuts inside a paragraph, a heading or a list when one is
within reach, keeps what an append builds within a cost, and always moves on.
"""

from __future__ import annotations

import re

from gemma_chat.chat.markdown_blocks import ITEM_COST, slice_end

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


def test_every_slice_ends_in_a_paragraph_a_heading_or_a_list() -> None:
    slices = _slices(TEXT, 333, 1000)
    assert "".join(slices) == TEXT
    assert len(slices) > 8
    end = 0
    for piece in slices[:-1]:
        end += len(piece)
        line = _line_at(TEXT, end)
        assert line.strip(), end  # not on a blank line after a block
        assert re.match(r"A paragraph|## |- item|\d\. numbered", line), (end, line)


def test_a_list_is_cut_between_or_inside_its_items() -> None:
    text = PARA + "\n\n" + LIST + "\n\nAfter the list."
    after = text.index("After")
    # Reaching just past the list: the cut is at the end of its last item (growing a
    # list mounts only its new items, so nothing is built again for it).
    assert slice_end("", text, after, 1000) == after - 2
    # Reaching into the list: the cut is inside the item reached.
    second = text.index("- item 1")
    assert slice_end("", text, second + 5, 1000) == second + 5


def test_many_list_items_are_cut_by_their_cost() -> None:
    items = "".join(f"- {i}\n" for i in range(200))
    size = slice_end("Intro.\n\n", items, 1024, 5 * ITEM_COST)
    assert 1 <= items[:size].count("- ") <= 5


def test_an_open_list_costs_its_new_items_not_what_it_shows() -> None:
    # Shown so far ends inside a long list: an append adds items to it (and may build
    # its last item again), so 20 items shown cost nothing and 3 more fit in 4 items.
    shown = "Intro.\n\n" + "".join(f"- {i}\n" for i in range(20))
    queued = "- 20\n- 21\n- 22\n\nAfter the list.\n\n" + PARA * 5
    assert queued[: slice_end(shown, queued, 1024, 4 * ITEM_COST)] == "- 20\n- 21\n- 22"
    assert queued[: slice_end(shown, queued, 1024, 2 * ITEM_COST)] == "- 20"
    # A code block is still built again whole: over the budget, it is finished at once.
    shown = "Intro.\n\n```\n" + "line\n" * 40
    queued = "line\n" * 5 + "```\n\nText.\n\n" + PARA
    assert queued[: slice_end(shown, queued, 1024, 3)] == "line\n" * 5 + "```\n\nText."


def test_long_text_counts_against_the_budget() -> None:
    # Paragraphs of 76 characters, 78 with the blank line: 1 each, and 1 per 100 chars.
    prose = "\n\n".join([PARA] * 40)
    assert prose[: slice_end("", prose, 4096, 10, chars_per_cost=100)].count(PARA) == 6
    # One long paragraph is cut inside, where the budget runs out.
    prose = " ".join([PARA] * 40)
    assert slice_end("", prose, 4096, 10, chars_per_cost=100) == 999
    # After a list (its last item may be built again: 4) and the paragraph's own 1,
    # 599 characters are left.
    assert slice_end("- a\n- b\n\n", prose, 4096, 10, chars_per_cost=100) == 599


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
