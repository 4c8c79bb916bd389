"""The multi-line input: Enter sends, Ctrl+J (or Shift+Enter) adds a line, Up/Down at
the edges recall earlier prompts, Tab completes slash commands and paths (after
``/read`` and ``@``)."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from gemma_chat.chat.commands import complete
from gemma_chat.chat.path_complete import complete_paths
from gemma_chat.sanitize import visible


class PromptInput(TextArea):
    """Where the user writes. Posts :class:`PromptInput.Submitted` on Enter."""

    BINDINGS = [
        Binding("ctrl+j", "newline", "New line", id="gemma.newline", show=False),
        Binding("shift+enter", "newline", "New line", id="gemma.newline_shift", show=False),
        # The conversation scrolls from the input, as in every chat client: the input
        # rarely holds a page of text to move through.
        Binding("pageup", "scroll_chat('page_up')", "Scroll the conversation up a page",
                id="gemma.page_up", show=False),
        Binding("pagedown", "scroll_chat('page_down')", "Scroll the conversation down a page",
                id="gemma.page_down", show=False),
        Binding("ctrl+home", "scroll_chat('home')", "Scroll to the conversation's start",
                id="gemma.scroll_home", show=False),
        Binding("ctrl+end", "scroll_chat('end')", "Scroll to the conversation's end",
                id="gemma.scroll_end", show=False),
        Binding("ctrl+d", "quit_if_empty", "Quit (on an empty input; else delete right)",
                id="gemma.quit_empty", show=False),
    ]  # fmt: skip

    class Submitted(Message):
        """The user pressed Enter."""

        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    class ScrollRequested(Message):
        """A scroll key was pressed in the input: ``where`` is ``page_up``,
        ``page_down``, ``home`` or ``end``."""

        def __init__(self, where: str) -> None:
            self.where = where
            super().__init__()

    class QuitRequested(Message):
        """Ctrl+D on an empty input (as in a shell)."""

    class CompletionsChanged(Message):
        """The slash-command completions for the current text changed."""

        def __init__(self, matches: list[str]) -> None:
            self.matches = matches
            super().__init__()

    def __init__(self, prompt_history: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus", **kwargs)  # type: ignore[arg-type]
        self.prompt_history: list[str] = list(prompt_history or [])
        self._browse: int | None = None  # index into history while recalling
        self._draft = ""
        self._matches: list[str] = []

    def action_newline(self) -> None:
        """Insert a line break."""
        self.insert("\n")

    def action_scroll_chat(self, where: str) -> None:
        """Scroll the conversation (the app does it)."""
        self.post_message(self.ScrollRequested(where))

    def action_quit_if_empty(self) -> None:
        """Ctrl+D: quit when the input is empty, else delete the character on the right."""
        if self.text:
            self.action_delete_right()
        else:
            self.post_message(self.QuitRequested())

    def action_submit(self) -> None:
        """Enter: send what the input holds."""
        self.post_message(self.Submitted(self.text))

    def _bound_to(self, key: str, action: str) -> bool:
        """Whether ``key`` runs ``action`` here, as remapped by ``[keys]``."""
        bindings = self._bindings.copy()
        keymap = self.app._keymap  # Textual keeps the remapping here (no public getter)
        if keymap:
            bindings.apply_keymap(keymap)
        return any(binding.action == action for binding in bindings.key_to_bindings.get(key, []))

    async def _on_key(self, event: events.Key) -> None:
        if self._bound_to(event.key, "newline"):
            # At once, in key order: run as a binding, the line break came after the
            # keys typed right behind Ctrl+J ("A^JBBB" gave "ABBB\n" in tmux).
            event.stop()
            event.prevent_default()
            self.action_newline()
            return
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()
            return
        if event.key == "tab" and self._matches:
            event.stop()
            event.prevent_default()
            self._complete()
            return
        if event.key == "up" and self.cursor_location[0] == 0 and self._recall(-1):
            event.stop()
            event.prevent_default()
            return
        last_row = self.document.line_count - 1
        if event.key == "down" and self.cursor_location[0] == last_row and self._recall(1):
            event.stop()
            event.prevent_default()
            return
        await super()._on_key(event)

    def remember(self, text: str) -> None:
        """Add a sent prompt to the history (no duplicates in a row)."""
        if text.strip() and (not self.prompt_history or self.prompt_history[-1] != text):
            self.prompt_history.append(text)
        self._browse = None

    def set_text(self, text: str) -> None:
        """Replace the text and put the cursor at its end.

        The text may come from the history (Ctrl+O on a resumed message, a failed
        reply's question): a TextArea would send its escape sequences to the terminal
        as they are, so they are shown as visible stand-ins, and sent as such."""
        self.load_text(visible(text))
        self.move_cursor(self.document.end)

    def _recall(self, step: int) -> bool:
        if not self.prompt_history:
            return False
        if self._browse is None:
            if step > 0:
                return False
            self._draft = self.text
            index = len(self.prompt_history) - 1
        else:
            index = self._browse + step
        if index >= len(self.prompt_history):
            self._browse = None
            self.set_text(self._draft)
            return True
        if index < 0:
            return True  # stay on the oldest
        self._browse = index
        self.set_text(self.prompt_history[index])
        return True

    def _complete(self) -> None:
        current = self.text.strip()
        if current in self._matches:
            following = self._matches[(self._matches.index(current) + 1) % len(self._matches)]
        else:
            following = self._matches[0]
        folder = following.endswith("/")  # a folder's path goes on; a file's is done
        self.set_text(following if folder else following + " ")
        self._matches = complete(following) or complete_paths(self.text)

    async def _on_paste(self, event: events.Paste) -> None:
        # Pasted text may carry escape sequences (copied from a hostile page): shown in
        # the input, never passed to the terminal. Terminals paste line ends as CR.
        event.text = visible(event.text.replace("\r\n", "\n").replace("\r", "\n"))
        await super()._on_paste(event)

    def _on_text_area_changed(self, event: TextArea.Changed) -> None:
        matches = (
            (complete(self.text) or complete_paths(self.text)) if "\n" not in self.text else []
        )
        if matches != self._matches:
            self._matches = matches
            self.post_message(self.CompletionsChanged(matches))
