"""Full-text search through every stored message, as you type (Ctrl+F).

Titles and snippets are stored text, so untrusted: shown through
:mod:`gemma_chat.sanitize`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from gemma_chat.errors import GemmaChatError
from gemma_chat.sanitize import one_line, visible

MATCH_STYLE = "bold reverse"
"""How a matched word stands out in a snippet (readable in every theme)."""
_OPEN, _CLOSE = "\x02", "\x03"
ROLE_NAMES = {"user": "you", "model": "Gemma"}


def snippet_text(snippet: str) -> Text:
    """A snippet whose matches are between ``\\x02`` and ``\\x03`` as styled text."""
    text = Text()
    rest = snippet
    while _OPEN in rest:
        before, _, after = rest.partition(_OPEN)
        match, _, rest = after.partition(_CLOSE)
        text.append(visible(before))
        text.append(visible(match), style=MATCH_STYLE)
    text.append(visible(rest))
    return text


def hit_prompt(hit: Any) -> Text:
    """One result: the conversation's title and who wrote the message, then the
    snippet with its matches highlighted."""
    line = Text()
    line.append(one_line(hit.title, 200), style="bold")
    line.append(f" · {one_line(ROLE_NAMES.get(hit.role, hit.role))}", style="dim")
    line.append("\n")
    line.append_text(snippet_text(hit.highlighted(_OPEN, _CLOSE)))
    return line


class SearchScreen(ModalScreen[Any]):
    """Searches as the user types; returns the chosen ``SearchHit`` (None: closed)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="gemma.search_close"),
        Binding("down", "move(1)", "Next result", show=False, id="gemma.search_next"),
        Binding("up", "move(-1)", "Previous result", show=False, id="gemma.search_previous"),
    ]

    def __init__(self, search: Callable[[str], list[Any]], query: str = "") -> None:
        """Args: search: Runs a query (``HistoryStore.search``). query: Typed already."""
        super().__init__()
        self._search = search
        self._query = query
        self._hits: list[Any] = []

    def compose(self):
        with Vertical(id="search-body"):
            yield Input(self._query, placeholder="Search every conversation…", id="search-input")
            yield Static("Type a word to search for.", id="search-status")
            yield OptionList(id="search-results")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        if self._query:
            self._run(self._query)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._run(event.value)

    def _run(self, query: str) -> None:
        status = self.query_one("#search-status", Static)
        results = self.query_one(OptionList)
        self._hits = []
        if query.strip():
            try:
                self._hits = self._search(query)
            except GemmaChatError as exc:
                status.update(Text(one_line(str(exc))))
            else:
                count = len(self._hits)
                status.update(
                    f"{count} message{'s' if count != 1 else ''} found · Enter opens"
                    if count
                    else "Nothing found."
                )
        else:
            status.update("Type a word to search for.")
        options: list[Option | None] = []
        for index, hit in enumerate(self._hits):
            options += [None] if index else []  # a separator line between results
            options.append(Option(hit_prompt(hit), id=str(index)))
        results.set_options(options)
        if self._hits:
            results.highlighted = 0

    def action_move(self, step: int) -> None:
        """Move the highlight through the results while typing."""
        results = self.query_one(OptionList)
        if step > 0:
            results.action_cursor_down()
        else:
            results.action_cursor_up()

    def on_input_submitted(self) -> None:
        option = self.query_one(OptionList).highlighted_option
        if option is not None and option.id is not None:
            self.dismiss(self._hits[int(option.id)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_id is not None:
            self.dismiss(self._hits[int(event.option_id)])

    def action_cancel(self) -> None:
        """Close without opening anything."""
        self.dismiss(None)
