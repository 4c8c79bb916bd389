"""Finished parts of a reply shown as one widget each, so a long reply stays cheap.

Textual lays out every widget of the screen on each update, and a Markdown widget is
one widget per block (and more for lists, code and tables): late in a 20,000-token reply
that is thousands of widgets re-laid out on every frame. Once a part of the reply is
finished (a closed segment, or the last one when the reply ends), it is drawn once, as
the screen shows it, into the lines of one :class:`FlatSegment`; its Markdown widget
stays, hidden (its ``source`` is what the part renders, already sanitized). The look is
the Markdown widget's own: the same lines, only drawn once.

Those lines hold for one width, theme, background and opacity. When any of them changes
(a resize, another theme, the reply selected or being edited), the Markdown widget is
shown again and drawn once more. Links in the lines are not clickable (their actions are
dropped with the rest of the lines' metadata), as in the reply's Markdown
(``open_links=False``).

A streamed reply draws each part it closes with :func:`flatten_closed`, in its own task
and in the frame after the part was laid out; :func:`flatten_later` does it from a
callback (a reply given whole, the last part, a part whose turn has not come).
:func:`next_frame` paces the streaming: a reply waits for the screen to be updated
between two slices of text.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual._compositor import Compositor  # Textual's own: the lines exactly as shown
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Markdown

RETRIES = 20
"""Times to wait for a finished part to be laid out before it is left as it is."""
RETRY_S = 1 / 30
"""How long each wait is."""


def _looks(widget: Widget) -> tuple[Any, ...]:
    """What a widget's drawn lines depend on besides its text."""
    return (widget.size.width, widget.background_colors, widget.opacity, widget.app.theme)


def draw(widget: Widget) -> list[Strip] | None:
    """The lines of a widget and its children as the screen shows them now (None when it
    is not laid out). Metadata (link actions, offsets) is dropped."""
    size = widget.region.size
    if not size.area:
        return None
    # A part mounted since the screen's last layout has no width yet: known without the
    # reflow below, which costs as much as the screen's own layout of the part.
    if _unsized(widget):
        return None
    compositor = Compositor()
    compositor.reflow(widget, size)
    # Each part draws itself at the size the screen gave it: a part mounted since the
    # screen's last layout has none yet, and would be drawn blank.
    if any(part.region.size != place.region.size for part, place in compositor.full_map.items()):
        return None
    return [strip.discard_meta() for strip in compositor.render_strips()]


def _unsized(widget: Widget) -> bool:
    """Whether a shown descendant of ``widget`` has not been laid out yet (no width)."""
    return any(
        child.display and (not child.size.width or _unsized(child)) for child in widget.children
    )


class FlatSegment(Widget):
    """The finished parts of a reply, drawn once: the lines of their (hidden) Markdown
    widgets, one after the other. One widget however long the reply grows.

    Args:
        reply: The reply whose parts these are. When the lines no longer fit, its
            Markdown widgets are shown again, to be drawn anew.
    """

    DEFAULT_CSS = "FlatSegment { height: auto; width: 1fr; }"

    def __init__(self, reply: Widget) -> None:
        super().__init__(classes="reply-flat")
        self.sources: list[Markdown] = []
        """The Markdown widgets drawn here, in order."""
        self._strips: list[Strip] = []
        self._looks: tuple[Any, ...] | None = None
        self._reply = reply
        self._stale = False

    def add(self, source: Markdown, strips: list[Strip]) -> bool:
        """Add the lines of the next finished part (False: drawn with other looks)."""
        looks = _looks(source)
        if self._stale or (self._looks is not None and looks != self._looks):
            return False
        self._looks = looks
        self.sources.append(source)
        self._strips.extend(strips)
        self.refresh(layout=True)
        return True

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return len(self._strips)

    def _check(self) -> None:
        if not self._stale and self.size.width and _looks(self) != self._looks:
            self._stale = True
            self.call_later(self._unflatten)

    def on_resize(self) -> None:
        self._check()  # also when off screen: nothing renders it there

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._check()  # a theme, the reply selected or being edited

    def render_lines(self, crop: Region) -> list[Strip]:
        # The lines as drawn: no styles of this widget's own are applied on top.
        self._check()
        lines = self._strips[crop.y : crop.bottom]
        lines += [Strip.blank(crop.right)] * (crop.height - len(lines))
        return [line.crop(crop.x, crop.right) for line in lines]

    async def _unflatten(self) -> None:
        for source in self.sources:
            if source.is_mounted:
                source.display = True
        await self.remove()
        if self.sources:
            flatten_later(self._reply, self.sources[-1])


def flatten_later(reply: Widget, upto: Markdown) -> None:
    """Once the screen has laid them out, show the parts of ``reply`` up to ``upto``
    (all finished) in its :class:`FlatSegment`, one part a frame."""
    reply.call_after_refresh(_flatten, reply, upto)


async def _flatten(reply: Widget, upto: Markdown, tries: int = 0) -> None:
    shown = [part for part in reply.query_children(Markdown) if part.display]
    if upto not in shown:
        return  # removed, or already flat
    segment = shown[0]
    drawn = await flatten_first(reply, segment)
    if drawn is None:  # not laid out yet (or a hidden version)
        if tries < RETRIES:  # after a frame, not at once: a draw costs a few ms
            reply.set_timer(
                RETRY_S, lambda: reply.call_after_refresh(_flatten, reply, upto, tries + 1)
            )
        return  # else it stays as it is: the same look, only not flat
    if drawn and segment is not upto:
        flatten_later(reply, upto)


async def flatten_closed(reply: Widget, part: Markdown) -> int | None:
    """Draw ``part``, which a streamed reply just closed, into the reply's
    :class:`FlatSegment` now.

    Returns:
        The lines drawn; None when the screen has not laid the part out yet (try again
        after a frame); 0 when it is left to :func:`flatten_later` (an earlier part is
        not flat yet) or to nothing (removed meanwhile, or the looks changed).
    """
    if not part.is_attached:
        return 0
    shown = [segment for segment in reply.query_children(Markdown) if segment.display]
    if shown[:1] != [part]:
        flatten_later(reply, part)  # in order, after the earlier ones
        return 0
    return await flatten_first(reply, part)


async def flatten_first(reply: Widget, segment: Markdown) -> int | None:
    """Show ``segment``, the first part of ``reply`` still shown as Markdown, in the
    reply's :class:`FlatSegment` now.

    Returns:
        The lines drawn; 0 when it is left as it is (removed meanwhile, or the looks
        changed: the flat lines are being drawn anew); None when it is not laid out
        yet (try again after a frame).
    """
    strips = draw(segment)
    if strips is None:
        return None
    flats = reply.query_children(FlatSegment)
    flat = flats.first() if flats else None
    if flat is None:
        flat = FlatSegment(reply)
        flat.display = False
        await reply.mount(flat, before=segment)
        if not segment.is_mounted or not segment.display:
            return 0
    if not flat.add(segment, strips):
        return 0
    # In one go, so that no frame shows both or neither.
    flat.display = True
    segment.display = False
    return len(strips)


FRAME_WAIT_S = 0.25
"""The longest a reply waits for the screen between two slices (none while a dialog
covers it, or as the app quits)."""


async def next_frame(widget: Widget) -> None:
    """Wait until the screen has been updated (at most ``FRAME_WAIT_S``).

    A fixed pause between two appends may see no frame at all: the screen skips an
    update that comes while an append holds ``batch_update``, and the next append then
    starts before another one, so two slices end up in one frame."""
    painted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    widget.call_after_refresh(lambda: painted.done() or painted.set_result(None))
    widget.refresh()  # an update to come, even if the last one was skipped
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(painted, FRAME_WAIT_S)
