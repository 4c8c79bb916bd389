"""The conversation view: user messages, streamed model replies, notices.

Every text shown here may be untrusted (a model's reply, a resumed or imported message,
a server's error): each widget passes it through :mod:`gemma_chat.sanitize` as it comes
in, so escape sequences are shown (``␛``), never sent to the terminal. The widgets'
``text`` attributes keep the text exactly as it is (for /copy, retry and the history).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, TypeVar

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Markdown, Static

from gemma_chat.chat.conversation import StopReason
from gemma_chat.chat.markdown_blocks import slice_end, split_finished
from gemma_chat.sanitize import StreamSanitizer, one_line, visible
from gemma_chat.tui.widgets.flat_markdown import flatten_closed, flatten_later, next_frame
from gemma_chat.tui.widgets.preview import WholeTextRequested, preview
from gemma_chat.tui.widgets.selection import MessageSelection
from gemma_chat.tui.widgets.stream_markdown import StreamMarkdown
from gemma_chat.tui.widgets.user_message import UserMessage

W = TypeVar("W", bound=Widget)

RENDER_SLICE = 1024
"""Characters of queued reply text rendered before the screen gets to paint, at most."""
RENDER_COST = 28
"""What a slice may cost to show, at most: a paragraph or a heading costs 1, a list item
4, and 160 characters 1 (see :func:`~gemma_chat.chat.markdown_blocks.slice_end`)."""
DRAW_LINES = 4
"""Lines of a closed part drawn flat that cost as much as one unit of a slice: the slice
drawn in the same frame is smaller by that much (a 48-line part, 12 units)."""
DRAW_TRIES = 3
"""Frames a closed part may wait to be laid out before it is drawn flat later on."""
RAMP_COST = 10
"""A reply's first slices may cost this much more each, up to ``RENDER_COST``."""
SEGMENT_LINES = 12
"""Lines of streamed Markdown after which finished blocks are rendered once and left."""

STOP_MARKERS = {
    StopReason.CANCELLED: "stopped by you",
    StopReason.MAX_TOKENS: "max tokens reached",
    StopReason.REPETITION: "stopped by the repetition guard",
    StopReason.CONTEXT_FULL: "context full",
    StopReason.NEW_TURN: "stopped: the model tried to start a new turn",
    StopReason.FAILED: "cut off: the connection to the server failed",
    StopReason.SCHEMA_MISMATCH: "does not match the schema",
}
"""The quiet marker under a reply that did not end at the end of its turn."""


class ModelReply(Vertical):
    """A model reply, streamed as Markdown.

    Text streams into the live Markdown widget, appended a slice at a time (each append
    awaited, so the next waits for the screen: Textual's ``MarkdownStream`` would join a
    backlog into one long append that freezes the screen). A slice is cut inside a
    paragraph or a heading when it can be (see
    :func:`~gemma_chat.chat.markdown_blocks.slice_end`): the next append then updates
    that block in place instead of building a list or a code block again (an append
    inside a list, as a slow model's are, adds only its new items: see
    :mod:`.stream_markdown`). Once the live part holds
    ``SEGMENT_LINES`` lines, it is closed at the next block boundary (a blank line
    outside code fences, not inside a list, not before a quote, a code block or a
    heading, whose margins would then show a blank line more): everything before the boundary
    is complete as streamed and never changes again, and the rest continues in a new live
    widget; the slice ends there, and the reply's task draws the closed part flat in the
    next frame, with a slice smaller by what that costs. So when the reply ends only the
    live part needs its one full render (which completes its code blocks), however long
    the reply grew. Each finished
    part is then shown as one widget drawn once (see :mod:`.flat_markdown`), so the
    screen's layout does not grow with the reply. A quiet marker shows when the reply
    stopped for another reason than the end of its turn.

    :meth:`feed` only queues text and returns, so the app's message handler never waits
    for rendering and a key press such as Esc is handled at once; the reply's own task
    renders what has queued up, in one go.

    A reply given whole (a resumed conversation) is rendered once as it mounts, with its
    stop marker, and never streams. A huge one renders only its beginning (see
    :func:`preview`), with a button that opens the whole text.
    """

    selectable = True  # see MessageSelection

    def __init__(
        self, text: str = "", stop_reason: StopReason | None = None, speaker: str = "Gemma"
    ) -> None:
        """Args: text, stop_reason: A finished reply to show whole (default: stream).
        speaker: Who replies (the model's file name; "Gemma" when not known)."""
        super().__init__(classes="model-reply")
        self._versions: str | None = None
        self.text = text
        self.speaker = speaker
        self.stop_reason: StopReason | None = stop_reason
        if stop_reason in STOP_MARKERS:
            self.add_class("-stopped")
        shown = preview(text) if text else None
        self.shown_in_part = shown is not None
        self._hidden_chars = len(text) - len(shown) if shown is not None else 0
        self._safe = StreamSanitizer()  # what is rendered; self.text keeps the reply as is
        self._live_text = visible(text if shown is None else shown)
        self._inbox: list[str] = []
        self._pending = ""  # taken from the inbox, not rendered yet
        self._closed_part: Markdown | None = None  # the part the last slice closed, if any
        self._draw_cost = 0  # what drawing it flat cost the slice drawn after it
        self._slices = 0  # slices written
        self._wake = asyncio.Event()
        self._renderer: asyncio.Task[None] | None = None
        self._draining = False

    def feed(self, delta: str) -> None:
        """Queue streamed text for rendering (returns at once)."""
        self.text += delta
        self._inbox.append(self._safe.feed(delta))
        self._wake_renderer()

    def _wake_renderer(self) -> None:
        self._wake.set()
        if self._renderer is None:
            self._renderer = asyncio.create_task(self._render_queued())

    def on_unmount(self) -> None:
        # Removed (retry, edit, /new) while still rendering: stop the task with it.
        if self._renderer is not None and not self._renderer.done():
            self._renderer.cancel()

    async def _render_queued(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Render a backlog in slices, with a frame painted after each: one huge
            # append would mount dozens of blocks in one go and freeze the screen.
            while self._inbox:
                self._pending += "".join(self._inbox)
                self._inbox.clear()
                while self._pending:
                    # A part closed by the last slice is drawn flat in this frame, with
                    # a slice smaller by what the drawing costs.
                    cost = RENDER_COST - await self._flatten_closed()
                    # The first slices' frames also show what sending did (the input
                    # cleared, the footer's keys built again): they start small.
                    self._slices += 1
                    cost = min(cost, RAMP_COST * self._slices)
                    size = slice_end(self._live_text, self._pending, RENDER_SLICE, cost)
                    size = await self.write(self._pending[:size])
                    self._pending = self._pending[size:]
                    await next_frame(self)
            await self._flatten_closed()  # nothing more to show yet: drawn alone
            if self._draining and not self._inbox:
                await self._final_render()
                return

    def on_mount(self) -> None:
        if self.text or self.stop_reason is not None:  # given whole: flat, cheap later on
            flatten_later(self, self.segments[-1])

    def compose(self):
        yield Static(self._speaker_line(self._versions), classes="speaker")
        # open_links=False: a link's target is the model's choice and hides behind its text.
        yield StreamMarkdown(self._live_text or None, classes="reply-body", open_links=False)
        if self.shown_in_part:
            yield Button(
                f"⋯ Show the whole reply ({self._hidden_chars:,} more characters)",
                classes="show-whole",
                compact=True,
            )
        marker = STOP_MARKERS.get(self.stop_reason, "") if self.stop_reason else ""
        yield Static(f"■ {marker}" if marker else "", classes="stop-marker")

    def on_blur(self) -> None:
        self.can_focus = False  # focusable only while selected (Alt+Up, a click)

    def _speaker_line(self, versions: str | None) -> Text:
        line = Text(one_line(self.speaker), style="bold dim")
        if versions is not None:
            line.append(f"  ‹ {versions} ›", style="bold")
        return line

    def show_versions(self, label: str | None) -> None:
        """Show which version of the reply this is (``2/3``; None: the only one)."""
        self._versions = label  # composed with it when not mounted yet
        for speaker in self.query(".speaker"):
            if isinstance(speaker, Static):
                speaker.update(self._speaker_line(label))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.has_class("show-whole"):
            event.stop()
            self.post_message(WholeTextRequested(self.text, "reply"))

    @property
    def segments(self) -> list[Markdown]:
        """The reply's Markdown widgets, oldest first; the last one is live."""
        # Children only: a query of all descendants would walk every block of the reply.
        return list(self.query_children(Markdown).results(Markdown))

    async def write(self, delta: str) -> int:
        """Render more streamed text now (``feed`` queues it for this), up to where the
        live part is closed, if it is.

        Returns:
            How much of ``delta`` was rendered: the rest is for the next slice, after a
            frame (the closed part is drawn flat then).
        """
        written = len(self._live_text)
        combined = self._live_text + delta
        if combined.count("\n") >= SEGMENT_LINES:
            finished, rest = split_finished(combined, spaced=True)
            # Cut only at a boundary inside this delta: what was streamed before it is
            # already on screen exactly as a full render would show it.
            if finished and len(finished) >= written and rest:
                tail = finished[written:]
                with self.app.batch_update():  # one screen update for all of it, after
                    await self._write_live(tail)
                    self._closed_part = self.segments[-1]  # drawn flat after that update
                    marker = self.query_children(".stop-marker").first()
                    live = StreamMarkdown(classes="reply-body", open_links=False)
                    await self.mount(live, before=marker)
                self._live_text = ""
                if tail:  # the screen lays out the whole closed part: nothing more
                    return len(tail)
                await self._write_live(rest)
                return len(delta)
        await self._write_live(delta)
        return len(delta)

    async def _flatten_closed(self) -> int:
        """Draw the part the last slice closed flat, now that the screen has laid it
        out, and return what that costs the slice drawn with it."""
        closed, self._closed_part = self._closed_part, None
        drawn = await flatten_closed(self, closed) if closed else 0
        for _ in range(DRAW_TRIES):  # not laid out yet: an update was skipped
            if drawn is not None:
                break
            await next_frame(self)
            drawn = await flatten_closed(self, closed)
        if drawn is None:
            flatten_later(self, closed)
        self._draw_cost = (drawn or 0) // DRAW_LINES
        return self._draw_cost

    async def _write_live(self, text: str) -> None:
        if not text:
            return
        self._live_text += text
        segments = self.segments
        if segments:  # none once the app has closed it
            await segments[-1].append(text)

    def finish(self, stop_reason: StopReason) -> None:
        """The reply ended: show its stop marker now; the renderer then renders what is
        still queued, ends the stream and renders the live part once in full (so code
        blocks are complete). :attr:`rendering` is that task."""
        self.stop_reason = stop_reason
        marker = STOP_MARKERS.get(stop_reason)
        if marker:
            self.query_one(".stop-marker", Static).update(f"■ {marker}")
            self.add_class("-stopped")
        self._inbox.append(self._safe.finish())
        self._draining = True
        # The next frames also build the footer's keys again (Esc no longer stops
        # anything): a backlog's slices start small again, as at the reply's start.
        self._slices = 0
        self._wake_renderer()

    @property
    def rendering(self) -> asyncio.Task[None] | None:
        """The task rendering this reply (done once the reply is fully rendered)."""
        return self._renderer

    async def _final_render(self) -> None:
        segments = self.segments
        if not segments:  # removed meanwhile: a failed reply, the app quitting
            return
        await segments[-1].update(self._live_text)
        if segments[-1].is_attached:
            flatten_later(self, segments[-1])


class Notice(Static):
    """A line from gemma-chat itself (a load failure, a hint)."""

    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__(Text(visible(text)), classes="notice -error" if error else "notice")


class ChatLog(MessageSelection, VerticalScroll):
    """Scrollable conversation. It follows new text only while the user is at the
    bottom: scrolling up releases the anchor, scrolling back down restores it.

    It is anchored only while its content is taller than the view: Textual keeps an
    anchored view's content bottom-aligned, so a short conversation (after Ctrl+N, or a
    resize) would start below rows of empty space. With a message selected, ``[`` and
    ``]`` show its versions (see :class:`MessageSelection`)."""

    BINDINGS = [
        Binding(
            "left_square_bracket", "app.version(-1)", "Previous version", id="gemma.version_back"
        ),
        Binding("right_square_bracket", "app.version(1)", "Next version", id="gemma.version_on"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.speaker = "Gemma"
        """The name new replies are labelled with (the loaded model's file name)."""
        self._follow = True
        """Whether the view should follow new text (the anchor asked for)."""

    def on_mount(self) -> None:
        self.anchor()

    def anchor(self, anchor: bool = True) -> None:
        """Follow new text (see the class docstring: only once the content overflows)."""
        self._follow = anchor
        super().anchor(anchor and self._overflows())
        if not self._overflows():
            self.set_scroll(None, 0)

    def _overflows(self) -> bool:
        return self.virtual_size.height > self.scrollable_content_region.height

    def watch_virtual_size(self) -> None:
        self.on_resize()

    def on_resize(self) -> None:
        # The view or its content changed size: anchor once the content overflows, and
        # put a short conversation back at the top.
        if not self._follow or self._anchor_released:
            return
        overflows = self._overflows()
        if overflows != self.is_anchored:
            super().anchor(overflows)
        if not overflows and self.scroll_y != 0:
            self.set_scroll(None, 0)

    def scroll_for_key(self, where: str) -> None:
        """Scroll as a key pressed in the input asks: ``page_up``, ``page_down``,
        ``home`` or ``end`` (back at the end, the view follows new text again)."""
        scroll = {
            "page_up": self.scroll_page_up,
            "page_down": self.scroll_page_down,
            "home": self.scroll_home,
            "end": self.scroll_end,
        }[where]
        scroll(animate=False)

    async def add_user(self, text: str) -> UserMessage:
        """Show a user message (its time in its tooltip)."""
        message = UserMessage(text)
        message.tooltip = f"You · sent {datetime.now():%H:%M:%S}"
        await self.mount(message)
        return message

    async def add_reply(self) -> ModelReply:
        """Show an empty reply that text will stream into (its time in its tooltip)."""
        reply = ModelReply(speaker=self.speaker)
        reply.tooltip = f"{one_line(self.speaker)} · started {datetime.now():%H:%M:%S}"
        await self.mount(reply)
        return reply

    async def add_notice(self, text: str, *, error: bool = False) -> Notice:
        """Show a notice."""
        notice = Notice(text, error=error)
        await self.mount(notice)
        return notice

    def last(self, kind: type[W]) -> W | None:
        """The newest child of a type, if any."""
        found = self.query(kind)
        return found.last() if found else None
