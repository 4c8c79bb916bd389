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

_EDITING_KEYS = {
    "backspace": "action_delete_left",
    "delete": "action_delete_right",
    "enter": "action_submit",
}
"""Editing keys a selected message passes on to the input, as its action."""


class MessageSelection:
    """Click to select a message; typing goes on in the input (``#prompt``). A plain
    mixin: Textual finds the handlers along the MRO (a second Widget base would bring
    Widget's default CSS back over the scroll view's)."""

    app: Any
    screen: Any
    _bindings: Any

    def on_click(self, event: events.Click) -> None:
        widget: Widget | None = event.widget
        while widget is not None and not getattr(widget, "selectable", False):
            parent = widget.parent
            widget = parent if isinstance(parent, Widget) else None
        if widget is not None and widget.parent is self:
            widget.can_focus = True
            widget.focus()

    def on_key(self, event: events.Key) -> None:
        if self._bound(event.key):  # the version keys, as remapped: the binding's
            return
        prompt = self.screen.query_one("#prompt", TextArea)
        if event.key in _EDITING_KEYS:
            prompt.focus()
            getattr(prompt, _EDITING_KEYS[event.key])()
        elif event.is_printable and event.character:
            prompt.focus()
            prompt.insert(event.character)
        else:
            return
        event.stop()
        event.prevent_default()

    def on_paste(self, event: events.Paste) -> None:
        prompt = self.screen.query_one("#prompt", TextArea)
        prompt.focus()
        prompt.insert(event.text)
        event.stop()

    def _bound(self, key: str) -> bool:
        """Whether the selected message or this view has a binding for ``key`` that is
        on (as remapped by ``[keys]``): the versions keys, Enter on a huge message."""
        keymap = self.app._keymap  # Textual keeps the remapping here (no public getter)
        for node in (self.screen.focused, self):
            if node is None:
                continue
            bindings = node._bindings.copy()
            if keymap:
                bindings.apply_keymap(keymap)
            for binding in bindings.key_to_bindings.get(key, []):
                if node.check_action(binding.action, ()) is not False:
                    return True
        return False
