"""The model picker (``/model`` with no path): every model gemma-chat finds, with its
memory plan; the chosen one loads in the background and the conversation stays.

Names, summaries and problems come from file names and GGUF metadata: shown through
:func:`gemma_chat.sanitize.one_line`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from gemma_chat.errors import GemmaChatError
from gemma_chat.models.kind import PULL_HINT, PULLED_NAME
from gemma_chat.sanitize import one_line

NO_CHAT_MODEL = (
    "No instruction-tuned model found: base models continue text rather than answer it. "
    f"Get one with `{PULL_HINT}` in a shell, then /model {PULLED_NAME}."
)
"""The picker's hint when nothing listed is tuned for chat."""


def choice_prompt(choice: Any) -> Text:
    """One model: its name (marked when loaded), a summary, and its plan or problem."""
    line = Text()
    line.append(("● " if choice.current else "  ") + one_line(choice.name), style="bold")
    if choice.summary:
        line.append(f"\n  {one_line(choice.summary)}", style="dim")
    if choice.error:
        line.append(f"\n  cannot be loaded: {one_line(choice.error)}", style="bold red")
    elif choice.plan:
        line.append(f"\n  {one_line(choice.plan)}")
    return line


class ModelPicker(ModalScreen[str | None]):
    """Lists models as discovery finds them; returns the ``--model`` value chosen."""

    BINDINGS = [Binding("escape", "cancel", "Close", id="gemma.models_close")]

    class Found(Message):
        """The worker finished looking (``choices``) or failed (``error``)."""

        def __init__(self, choices: list[Any], error: str | None = None) -> None:
            super().__init__()
            self.choices = choices
            self.error = error

    def __init__(self, find: Callable[[], list[Any]]) -> None:
        """Args:
        find: Returns the choices (``model_menu.model_choices`` bound to the app's
            settings); it blocks, so it runs in a worker.
        """
        super().__init__()
        self._find = find
        self.choices: list[Any] = []

    def compose(self):
        with Vertical(id="models-body"):
            yield Static("Models", id="models-title")
            yield Static("Looking for models and planning their memory…", id="models-status")
            yield OptionList(id="models-list")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.look()

    @work(thread=True, exclusive=True, exit_on_error=False, group="models")
    def look(self) -> None:
        """Worker: run discovery and the planner, then post what was found."""
        try:
            self.post_message(self.Found(self._find()))
        except GemmaChatError as exc:
            self.post_message(self.Found([], str(exc)))
        except Exception as exc:
            self.post_message(self.Found([], f"{type(exc).__name__}: {exc}"))

    def on_model_picker_found(self, message: Found) -> None:
        status = self.query_one("#models-status", Static)
        self.choices = message.choices
        if message.error:
            status.update(Text(one_line(f"Could not list the models: {message.error}")))
            return
        if not self.choices:
            status.update(
                f"No models found. Download one with `{PULL_HINT}`, or load a "
                "file with /model PATH."
            )
            return
        found = f"{len(self.choices)} found · Enter loads (the conversation stays)"
        if not any(getattr(choice, "kind", "unknown") == "instruct" for choice in self.choices):
            found += f"\n{NO_CHAT_MODEL}"
        status.update(Text(found))
        options: list[Option | None] = []
        for index, choice in enumerate(self.choices):
            options += [None] if index else []
            options.append(
                Option(choice_prompt(choice), id=str(index), disabled=bool(choice.error))
            )
        listing = self.query_one(OptionList)
        listing.set_options(options)
        listing.highlighted = next(
            (i for i, option in enumerate(listing.options) if not option.disabled), None
        )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_id is not None:
            self.dismiss(self.choices[int(event.option_id)].model)

    def action_cancel(self) -> None:
        """Close without loading anything."""
        self.dismiss(None)
