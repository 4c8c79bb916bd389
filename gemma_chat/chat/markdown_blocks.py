"""Where a streamed Markdown text can be cut into finished blocks (pure; no rendering).

Used by ``ask``'s terminal renderer and by the TUI's streamed replies: a finished block
never changes again, so it can be rendered once, and only the open block is redrawn.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"\s*(```|~~~)")
_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])[ \t]")
_SPACED = re.compile(r">|```|~~~|#{1,6}(?:[ \t\n]|$)|([-*_])[ \t]*\1[ \t]*\1")
"""A quote, code, a heading, a rule: blocks with space of their own above them."""


def split_finished(text: str, *, spaced: bool = False) -> tuple[str, str]:
    """Split Markdown into (finished blocks, open block).

    A block is finished at a blank line outside a code fence once the next block has
    started at column 0 and is not another item of a list. Indented text after a blank
    line (a list item's continuation, a nested list or code block) and the next item of a
    loose list stay with the open block, so lists are rendered whole. One pass over the
    lines: it runs on every streamed line.

    ``spaced``: cut only before a block with no space of its own above it in Textual's
    Markdown (not before a quote, a code block, a heading or a rule): the margins of two
    blocks in one widget overlap, and those of two widgets would not, so parts shown one
    after the other would have a blank line more between them than the text shown whole.
    """
    cut = 0
    in_fence = False
    offset = 0
    lines = text.split("\n")
    for index, line in enumerate(lines[:-1]):
        offset += len(line) + 1  # where the next line starts
        if _FENCE.match(line):
            in_fence = not in_fence
        elif index and not line.strip() and not in_fence:
            after = text[offset:]
            if (
                after
                and after[0] not in " \t\n"
                and not _LIST_ITEM.match(after)
                and not (spaced and _SPACED.match(after))
            ):
                cut = offset
    return text[:cut], text[cut:]


ITEM_COST = 4
"""What a list item costs to show, against 1 for a paragraph or a heading: Textual's
Markdown shows an item as four widgets (a row, its bullet, a column, the paragraph)."""
FENCE_COST = 2
"""What a code block costs to show (two widgets), plus 1 per ``FENCE_LINES`` lines."""
FENCE_LINES = 10
CHARS_PER_COST = 160
"""Characters of text that cost as much to show as one more block (parsing, drawing)."""


def slice_end(
    shown: str, queued: str, max_chars: int, max_cost: int, chars_per_cost: int = CHARS_PER_COST
) -> int:
    """How much of a backlog of Markdown to show next, after ``shown`` (the text already
    in the same Markdown widget).

    A Markdown widget re-parses its last block on each append: a paragraph or a heading
    is then updated in place, but a list, a code block or a table is built again whole.
    So the cut is made inside a paragraph or a heading when one is within reach, rather
    than inside or just after a list or a code block; and the cost of what the append
    builds (the blocks it starts, and the open list or code block it builds again; a
    paragraph or heading costs 1, a list item ``ITEM_COST``) is kept within
    ``max_cost``, with 1 more per ``chars_per_cost`` characters, so that no append holds
    the screen for long. An open block dearer than that alone is finished at once. Only the first
    ``max_chars`` of ``queued`` (and the lines of ``shown``) are read.

    Returns:
        How many characters of ``queued`` to show next: all of them when they fit, at
        least 1 when there are any.
    """
    head = queued[:max_chars]
    # An open list or code block is built again by any append: when that alone is over
    # the budget, it is finished in this slice rather than built again slice after slice.
    over = next(cost for _start, _end, _cheap, cost in _scan(shown, "")) > max_cost
    best = last = 0
    for start, end, cheap, cost in _scan(shown, head):
        if over:
            if cheap:
                return end  # finished, and the next block started
            last = end
            continue
        if cost + end // chars_per_cost > max_cost:
            fit = (max_cost - cost + 1) * chars_per_cost - 1
            if cheap and fit > start:
                return fit  # a long paragraph: cut inside it
            if last:
                break
        last = end
        if cheap:
            best = end
    else:
        if len(head) == len(queued):
            return len(queued)  # all of it fits
    return best or last or min(1, len(queued))


def _scan(shown: str, head: str):
    """(start, end, cheap, cost) for each line of ``head`` (cut short at its end):
    ``start`` and ``end`` counted in ``head``; ``cheap``: a cut at ``end`` is inside a
    paragraph or a heading; ``cost``: what appending ``head[:end]`` after ``shown``
    builds (the blocks started in ``head``, and the last block of ``shown`` unless it is
    a paragraph or a heading)."""
    border = len(shown)
    kind = ""  # the open block: "para", "list", "fence", "other"; "" before any
    block_cost = 0
    in_head = False  # whether the open block started in head
    built = 0  # the cost of the blocks closed since the border
    in_fence = False
    fence_lines = 0
    blank_before = True
    start = 0
    for line in (shown + head).split("\n"):
        end = start + len(line)
        new = ""  # the kind of block this line starts, if it starts one
        stripped = line.strip()
        indented = line[:1] in (" ", "\t")
        if in_fence:
            in_fence = _FENCE.match(line) is None
            fence_lines += 1
            block_cost = FENCE_COST + fence_lines // FENCE_LINES
        elif _FENCE.match(line):
            new, in_fence, fence_lines = "fence", True, 0
        elif not stripped:
            pass
        elif _LIST_ITEM.match(stripped) and (kind == "list" or not indented):
            if kind == "list":
                block_cost += ITEM_COST
            else:
                new = "list"
        elif kind == "list" and (indented or not blank_before):
            block_cost += 1  # an item's continuation
        elif kind in ("para", "other") and not blank_before and not line.startswith("#"):
            block_cost += line.count("|")  # the paragraph, table or quote goes on
        else:
            new = "other" if indented or line.startswith((">", "|")) else "para"
        if new:
            if in_head or (start >= border and kind != "para"):
                built += block_cost  # a block of head, or the last one of shown
            in_head = start >= border
            kind = new
            block_cost = {"list": 1 + ITEM_COST, "fence": FENCE_COST}.get(new, 1)
            block_cost += line.count("|") if new == "other" else 0
        blank_before = not stripped and not in_fence
        if end >= border:  # a line with text of head
            cheap = kind == "para" and bool(stripped) and end > max(start, border)
            open_cost = block_cost if in_head or kind != "para" else 0
            yield max(start - border, 0), end - border, cheap, built + open_cost
        start = end + 1
