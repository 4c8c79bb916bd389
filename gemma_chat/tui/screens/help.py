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

    def __init__(self, groups: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
        """Args: groups: ``(title, rows)`` by where the keys work (anywhere, the input,
        the sidebar, search, dialogs); each row is ``(key, description, binding id)``."""
        super().__init__()
        self._groups = groups

    def compose(self):
        commands = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        commands.add_column("Command")
        commands.add_column("Does")
        for command in COMMANDS:
            commands.add_row(command.usage, command.help)
        with VerticalScroll(id="help-body"):
            yield Static(Text("gemma-chat help", style="bold"), classes="help-title")
            for title, rows in self._groups:
                keys = Table(box=None, show_header=False, pad_edge=False)
                keys.add_column("Key", min_width=14)
                keys.add_column("Does")
                keys.add_column("Binding id", style="dim")
                for key, description, binding_id in rows:
                    keys.add_row(key, description, binding_id)
                yield Static(Text(title, style="bold underline"), classes="help-group")
                yield Static(keys)
            yield Static(Text("Slash commands", style="bold underline"), classes="help-group")
            yield Static(commands)
            yield Static(
                Text(
                    "Remap a key in the config file by its binding id: "
                    '[keys] "gemma.retry" = "f5". Esc, F1 or q closes this help.',
                    style="dim",
                )
            )

    async def action_dismiss(self, result: None = None) -> None:
        """Close the help."""
        self.dismiss(result)
