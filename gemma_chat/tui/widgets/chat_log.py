"""The conversation view: user messages, streamed model replies, notices."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from gemma_chat.conversation import StopReason

STOP_MARKERS = {
    StopReason.CANCELLED: "stopped by you",
    StopReason.MAX_TOKENS: "max tokens reached",
    StopReason.REPETITION: "stopped by the repetition guard",
    StopReason.CONTEXT_FULL: "context full",
    StopReason.NEW_TURN: "stopped: the model tried to start a new turn",
}
"""The quiet marker under a reply that did not end at the end of its turn."""


class UserMessage(Static):
    """A message the user sent, shown as typed (no Markdown, no markup)."""

    def __init__(self, text: str) -> None:
        super().__init__(Text(text), classes="user-message")
        self.text = text


class ModelReply(Vertical):
    """A model reply: Markdown streamed through one ``MarkdownStream``, then rendered
    once in full, with a quiet marker when it stopped for a reason other than the end
    of the turn."""

    def __init__(self) -> None:
        super().__init__(classes="model-reply")
        self.text = ""
        self.stop_reason: StopReason | None = None
        self._stream: MarkdownStream | None = None

    def compose(self):
        yield Markdown(classes="reply-body")
        yield Static(classes="stop-marker")

    @property
    def body(self) -> Markdown:
        """The Markdown widget."""
        return self.query_one(Markdown)

    async def write(self, delta: str) -> None:
        """Append streamed text. Fragments are batched by the stream when they come
        faster than the widget can render."""
        if self._stream is None:
            self._stream = Markdown.get_stream(self.body)
        self.text += delta
        await self._stream.write(delta)

    async def finish(self, text: str, stop_reason: StopReason) -> None:
        """End the stream and render the whole reply once, so code blocks are complete."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.text = text
        self.stop_reason = stop_reason
        await self.body.update(text)
        marker = STOP_MARKERS.get(stop_reason)
        if marker:
            self.query_one(".stop-marker", Static).update(f"■ {marker}")
            self.add_class("-stopped")


class Notice(Static):
    """A line from gemma-chat itself (a load failure, a hint)."""

    def __init__(self, text: str, *, error: bool = False) -> None:
        super().__init__(Text(text), classes="notice -error" if error else "notice")


class ChatLog(VerticalScroll):
    """Scrollable conversation. It follows new text only while the user is at the
    bottom: scrolling up releases the anchor, scrolling back down restores it."""

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> UserMessage:
        """Show a user message."""
        message = UserMessage(text)
        await self.mount(message)
        return message

    async def add_reply(self) -> ModelReply:
        """Show an empty reply that text will stream into."""
        reply = ModelReply()
        await self.mount(reply)
        return reply

    async def add_notice(self, text: str, *, error: bool = False) -> Notice:
        """Show a notice."""
        notice = Notice(text, error=error)
        await self.mount(notice)
        return notice

    def last(self, kind: type) -> object | None:
        """The newest child of a type, if any."""
        found = self.query(kind)
        return found.last() if found else None
