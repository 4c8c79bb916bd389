"""The help screen (F1): every key and every slash command."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gemma_chat.chat.commands import COMMANDS


class HelpScreen(ModalScreen[None]):
    """Lists the keys (as currently mapped) and the slash commands."""

    BINDINGS = [
        Binding("escape,f1,q", "dismiss", "Close", id="gemma.help_close"),
    ]

    def __init__(self, keys: list[tuple[str, str, str]]) -> None:
        """Args: keys: ``(key, description, binding id)`` for every binding."""
        super().__init__()
        self._keys = keys

    def compose(self):
        keys = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        keys.add_column("Key")
        keys.add_column("Does")
        keys.add_column("Binding id", style="dim")
        for key, description, binding_id in self._keys:
            keys.add_row(key, description, binding_id)
        commands = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        commands.add_column("Command")
        commands.add_column("Does")
        for command in COMMANDS:
            commands.add_row(command.usage, command.help)
        with VerticalScroll(id="help-body"):
            yield Static(Text("gemma-chat help", style="bold"), classes="help-title")
            yield Static(keys)
            yield Static("")
            yield Static(commands)
            yield Static(
                Text(
                    "Enter sends · Ctrl+J or Shift+Enter: new line · Up/Down at the first or "
                    "last line: earlier prompts · Tab completes a /command · Ctrl+P: command "
                    "palette · Ctrl+B: the history sidebar (Enter opens, n new, r renames, "
                    "d deletes) · Ctrl+F: search every conversation · Esc closes this help. "
                    "Remap a key in the config file: "
                    '[keys] "gemma.retry" = "f5".',
                    style="dim",
                )
            )

    async def action_dismiss(self, result: None = None) -> None:
        """Close the help."""
        self.dismiss(result)
