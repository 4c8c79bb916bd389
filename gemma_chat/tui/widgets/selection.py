"""Selecting a message in the conversation view with the mouse, without taking the
keyboard from the input: a mixin of :class:`gemma_chat.tui.widgets.chat_log.ChatLog`.

A selected (focused) message is what Ctrl+O, Ctrl+R and the version keys act on.
Messages are focusable only while selected, so Tab never stops on them, and typing
while one is selected goes on in the input.
"""

from __future__ import annotations

from typing import Any

from textual import events
from textual.widget import Widget
from textual.widgets import TextArea

_KEPT_KEYS = "[]"
"""Printable keys a selected message keeps (they switch its versions)."""


class MessageSelection:
    """Click to select a message; typing goes on in the input (``#prompt``). A plain
    mixin: Textual finds the handlers along the MRO (a second Widget base would bring
    Widget's default CSS back over the scroll view's)."""

    screen: Any

    def on_click(self, event: events.Click) -> None:
        widget: Widget | None = event.widget
        while widget is not None and not getattr(widget, "selectable", False):
            parent = widget.parent
            widget = parent if isinstance(parent, Widget) else None
        if widget is not None and widget.parent is self:
            widget.can_focus = True
            widget.focus()

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character and event.character not in _KEPT_KEYS:
            prompt = self.screen.query_one("#prompt", TextArea)
            prompt.focus()
            prompt.insert(event.character)
            event.stop()
            event.prevent_default()
