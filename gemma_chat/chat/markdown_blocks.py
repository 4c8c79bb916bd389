"""Where a streamed Markdown text can be cut into finished blocks (pure; no rendering).

Used by ``ask``'s terminal renderer and by the TUI's streamed replies: a finished block
never changes again, so it can be rendered once, and only the open block is redrawn.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"\s*(```|~~~)")
_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])[ \t]")


def split_finished(text: str) -> tuple[str, str]:
    """Split Markdown into (finished blocks, open block).

    A block is finished at a blank line outside a code fence once the next block has
    started at column 0 and is not another item of a list. Indented text after a blank
    line (a list item's continuation, a nested list or code block) and the next item of a
    loose list stay with the open block, so lists are rendered whole. One pass over the
    lines: it runs on every streamed line.
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
            if after and after[0] not in " \t\n" and not _LIST_ITEM.match(after):
                cut = offset
    return text[:cut], text[cut:]
