"""Where a streamed Markdown text can be cut into finished blocks (pure; no rendering).

Used by ``ask``'s terminal renderer and by the TUI's streamed replies: a finished block
never changes again, so it can be rendered once, and only the open block is redrawn.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
_LIST_ITEM = re.compile(r"([-*+]|\d+[.)])[ \t]")


def split_finished(text: str) -> tuple[str, str]:
    """Split Markdown into (finished blocks, open block).

    A block is finished at a blank line outside a code fence once the next block has
    started at column 0 and is not another item of a list. Indented text after a blank
    line (a list item's continuation, a nested list or code block) and the next item of a
    loose list stay with the open block, so lists are rendered whole.
    """
    cut = 0
    for match in re.finditer(r"\n[ \t]*\n", text):
        after = text[match.end() :]
        if not after or after[0] in " \t\n" or _LIST_ITEM.match(after):
            continue
        if len(_FENCE.findall(text[: match.start()])) % 2 == 0:
            cut = match.end()
    return text[:cut], text[cut:]
