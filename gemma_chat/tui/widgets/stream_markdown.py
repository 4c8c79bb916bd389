"""The Markdown widget a reply streams into: lists grow by their new items.

Textual's ``Markdown.append`` parses the last block again with the new text and, unless
it is a paragraph, removes it and mounts it again whole. A list is four widgets an item
(a row, its bullet, a column, the item's paragraph), so a list streamed over several
appends was built again on each: a 6-item list, 25 widgets mounted in one frame however
little was added. Here an open list that the new text only extends keeps the items it
has: the last one is updated in place (or built again, alone, when it holds more than a
paragraph) and only the new items are mounted. The widgets are the ones a whole rebuild
makes, with the same bullets, so the list looks exactly the same; when that would not
hold (other items, an ordered list whose numbers grow a digit wider), it is built again
whole, as before.
"""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Markdown
from textual.widgets._markdown import (  # Textual's own blocks, extended below
    MarkdownBlock,
    MarkdownBullet,
    MarkdownBulletList,
    MarkdownFence,
    MarkdownOrderedList,
    MarkdownParagraph,
)


def _signature(block: Widget) -> tuple[Any, ...]:
    """What a block shows: its type, its text and styles, and its blocks', in order."""
    content = getattr(block, "_content", None)
    text = (content.plain, tuple(content.spans)) if content is not None else None
    if isinstance(block, MarkdownFence):
        text = (block.code, block.lexer)
    children = getattr(block, "_blocks", None) or list(block.children)
    return (type(block).__name__, text, tuple(_signature(child) for child in children))


class _GrowingList:
    """A list that, updated with a longer version of itself, mounts only the new items.

    A mixin, not a widget: Textual takes a widget's CSS type names (and default CSS)
    from its first widget base only, which must stay Textual's own list class."""

    _blocks: list[MarkdownBlock]
    children: Any

    def _rows(self) -> list[Widget]:
        """The rows a whole build makes of this (unmounted) list's items (which it
        keeps: a list not grown into is mounted whole after all)."""
        items = list(self._blocks)
        rows = [row for row in super().compose() if isinstance(row, Horizontal)]
        self._blocks[:] = items
        return rows

    def compose(self):
        rows = self._rows()
        self._blocks.clear()
        self._signatures = [_row_signature(row) for row in rows]
        yield from rows

    async def _update_from_block(self, block: MarkdownBlock) -> None:
        if type(block) is not type(self) or not await self._extend(block):
            await super()._update_from_block(block)

    async def _extend(self, block: MarkdownBlock) -> bool:
        """Grow into ``block`` when it only adds to this list (False: build it again)."""
        old = getattr(self, "_signatures", None)
        rows = [child for child in self.children if isinstance(child, Horizontal)]
        if not old or len(rows) != len(old):
            return False
        assert isinstance(block, _GrowingList)
        new_rows = block._rows()
        new = [_row_signature(row) for row in new_rows]
        keep = len(old) - 1  # the last item may have grown
        if len(new) < len(old) or new[:keep] != old[:keep]:
            return False
        if [_bullet(row) for row in new_rows[: len(old)]] != [_bullet(row) for row in rows]:
            return False  # the numbers grew wider: every bullet changes
        self._token = block._token
        last, new_last = rows[-1], new_rows[keep]
        if new[keep] != old[keep] and not _update_row(last, new_last):
            await last.remove()
            await self.mount(new_last)
        if len(new_rows) > len(old):
            await self.mount_all(new_rows[len(old) :])
        self._signatures = new
        return True


def _bullet(row: Widget) -> str:
    bullet = next(iter(row.children), None) if row.is_attached else row._pending_children[0]
    return bullet.symbol if isinstance(bullet, MarkdownBullet) else ""


def _column(row: Widget) -> Widget:
    children = list(row.children) if row.is_attached else list(row._pending_children)
    return children[-1]


def _row_signature(row: Widget) -> tuple[Any, ...]:
    column = _column(row)
    blocks = list(column.children) if column.is_attached else list(column._pending_children)
    return tuple(_signature(block) for block in blocks)


def _update_row(row: Widget, new_row: Widget) -> bool:
    """Update a mounted row in place to show ``new_row``'s one paragraph, if both hold
    just one paragraph (False: it must be built again)."""
    column, new_column = _column(row), _column(new_row)
    old = list(column.children)
    new = list(new_column._pending_children)
    if len(old) != 1 or len(new) != 1:
        return False
    paragraph, new_paragraph = old[0], new[0]
    if not (
        isinstance(paragraph, MarkdownParagraph) and isinstance(new_paragraph, MarkdownParagraph)
    ):
        return False
    if paragraph._blocks or new_paragraph._blocks:
        return False
    paragraph.set_content(new_paragraph._content)
    paragraph._copy_context(new_paragraph)
    paragraph.source_range = new_paragraph.source_range
    return True


class GrowingBulletList(_GrowingList, MarkdownBulletList):
    """A bullet list that grows by its new items."""


class GrowingOrderedList(_GrowingList, MarkdownOrderedList):
    """A numbered list that grows by its new items."""


_PARSER: MarkdownIt | None = None


def _parser() -> MarkdownIt:
    """Textual's default parser, built once: Textual builds one for every append (with
    its linkifier), a few percent of a streamed reply's work. Parsing keeps no state in
    it between two texts."""
    global _PARSER
    if _PARSER is None:
        _PARSER = MarkdownIt("gfm-like")
    return _PARSER


class StreamMarkdown(Markdown):
    """Textual's Markdown, whose lists grow by their new items when text is appended
    (and whose parser is built once, not on each append)."""

    BLOCKS = {
        **Markdown.BLOCKS,
        "bullet_list_open": GrowingBulletList,
        "ordered_list_open": GrowingOrderedList,
    }

    def __init__(self, markdown: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_factory", _parser)
        super().__init__(markdown, **kwargs)
