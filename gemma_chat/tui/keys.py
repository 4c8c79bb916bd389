"""Key bindings: the app's keys (``APP_BINDINGS``, which the App declares, where Textual
needs them), the config's remapping and the help screen's rows (a collaborator the app
owns)."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding, BindingType

from gemma_chat.tui.keyspec import check_keymap, keymap_message
from gemma_chat.tui.widgets.chat_log import ChatLog
from gemma_chat.tui.widgets.prompt_input import PromptInput

QUIT_HINT = "Ctrl+Q quits (so do /quit, /exit, /bye, and Ctrl+D on an empty input)."
"""Said when Ctrl+C is pressed with no reply to stop."""

APP_BINDINGS: list[BindingType] = [
    # F1 first, and with priority: the footer lists priority keys first, so Help stays
    # in view in a narrow window and while the sidebar lists its own keys.
    Binding("f1", "help", "Help", id="gemma.help", priority=True),
    Binding("escape", "stop", "Stop", id="gemma.stop"),
    Binding(
        "ctrl+c",
        "interrupt",
        "Stop the reply (never quits)",
        id="gemma.stop_ctrl_c",
        show=False,
        priority=True,
    ),
    Binding("ctrl+r", "retry", "Retry", id="gemma.retry"),
    Binding("ctrl+o", "edit", "Edit", id="gemma.edit", show=False),
    Binding("alt+up", "select(-1)", "Select a message above", id="gemma.select_up", show=False),
    Binding("alt+down", "select(1)", "Select a message below", id="gemma.select_down", show=False),
    Binding("alt+left", "version(-1)", "Previous version", id="gemma.version_prev", show=False),
    Binding("alt+right", "version(1)", "Next version", id="gemma.version_next", show=False),
    Binding("ctrl+y", "copy", "Copy", id="gemma.copy", priority=True, show=False),
    Binding("ctrl+g", "toggle_gpu", "GPU", id="gemma.gpu", show=False),
    Binding("ctrl+n", "new", "New", id="gemma.new"),
    Binding("ctrl+b", "history", "History", id="gemma.history"),
    Binding("ctrl+f", "search", "Search", id="gemma.search"),
    Binding("f2", "settings", "Settings", id="gemma.settings"),
    Binding("ctrl+q", "quit", "Quit", id="gemma.quit", priority=True),
]
"""The app's keys, each with an id (``gemma.NAME``) that ``[keys]`` can remap."""


class KeyBindings:
    """Binding ids, remapping through ``[keys]`` and the F1 help screen's rows.

    Args:
        app: The app whose keys these are.
    """

    def __init__(self, app: App[None]) -> None:
        self._app = app

    def apply(self, keys: dict[str, str]) -> None:
        """Apply ``[keys]`` from the config. Entries with an unknown binding id or a key
        that is not a key are skipped and reported once, in one notification."""
        known = {binding.id for binding in self.all_bindings() if binding.id}
        keymap, problems = check_keymap(keys, known)
        if problems:
            self._app.notify(keymap_message(problems), severity="warning", timeout=15, markup=False)
        self._app.set_keymap(keymap)

    def toggle_help(self) -> None:
        """Open the F1 help screen, or close it when it is open."""
        from gemma_chat.tui.screens.help import HelpScreen

        if isinstance(self._app.screen, HelpScreen):
            self._app.screen.dismiss(None)
            return
        self._app.push_screen(HelpScreen(self.help_groups()))

    def all_bindings(self) -> list[Binding]:
        """Every binding of the app, its input, sidebar, screens and dialogs."""
        from gemma_chat.tui.screens.dialogs import ConfirmScreen, CorruptStoreScreen, RenameScreen
        from gemma_chat.tui.screens.help import HelpScreen
        from gemma_chat.tui.screens.search import SearchScreen
        from gemma_chat.tui.screens.settings import SettingsScreen
        from gemma_chat.tui.widgets.sidebar import HistorySidebar

        found = []
        owners = (type(self._app), PromptInput, ChatLog, HistorySidebar, SearchScreen, HelpScreen)
        dialogs = (SettingsScreen, RenameScreen, ConfirmScreen, CorruptStoreScreen)
        for owner in owners + dialogs:
            found += [b for b in owner.BINDINGS if isinstance(b, Binding)]
        return found

    def help_rows(self) -> list[tuple[str, str, str]]:
        """``(keys, description, binding id)`` for every binding, as remapped."""
        return [(self._display(b), b.description, b.id or "") for b in self.all_bindings()]

    def help_groups(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        """The F1 help's keys by where they work: ``(title, rows)`` with rows as in
        :meth:`help_rows`, plus the keys that are not bindings (Enter, Up/Down, Tab)."""
        from gemma_chat.tui.screens.dialogs import ConfirmScreen, CorruptStoreScreen, RenameScreen
        from gemma_chat.tui.screens.help import HelpScreen
        from gemma_chat.tui.screens.search import SearchScreen
        from gemma_chat.tui.screens.settings import SettingsScreen
        from gemma_chat.tui.widgets.sidebar import HistorySidebar

        def rows(owner: type, prefix: str = "") -> list[tuple[str, str, str]]:
            return [
                (self._display(b), prefix + b.description, b.id or "")
                for b in owner.BINDINGS
                if isinstance(b, Binding)
            ]

        dialogs = (
            ("Help", HelpScreen),
            ("Settings (F2)", SettingsScreen),
            ("Rename", RenameScreen),
            ("Confirm", ConfirmScreen),
            ("Unreadable history", CorruptStoreScreen),
        )
        return [
            ("Anywhere", [*rows(type(self._app)), ("Ctrl+P", "Command palette", "")]),
            (
                "In the input",
                [
                    ("Enter", "Send (a /command runs it)", ""),
                    *rows(PromptInput),
                    ("Up / Down", "Earlier prompts (on the first / last line)", ""),
                    ("Tab", "Complete a /command", ""),
                ],
            ),
            (
                "On a selected message (Alt+Up / Alt+Down, or a click)",
                [
                    *rows(ChatLog),
                    (self._key_of("gemma.edit"), "Edit it as a new version", ""),
                    (self._key_of("gemma.retry"), "Regenerate it (a question: its reply)", ""),
                ],
            ),
            (
                "In the history sidebar (Ctrl+B)",
                [("Enter", "Open the conversation", ""), *rows(HistorySidebar)],
            ),
            ("In search (Ctrl+F)", [("Enter", "Open the result", ""), *rows(SearchScreen)]),
            ("In dialogs", [row for name, owner in dialogs for row in rows(owner, f"{name}: ")]),
        ]

    def _key_of(self, binding_id: str) -> str:
        """The keys of one of the app's bindings, as remapped."""
        binding = next(b for b in APP_BINDINGS if isinstance(b, Binding) and b.id == binding_id)
        return self._display(binding)

    def _display(self, binding: Binding) -> str:
        keymap = self._app._keymap  # Textual keeps the remapping here (no public getter)
        keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
        return " / ".join(
            self._app.get_key_display(Binding(key.strip(), binding.action))
            for key in keys.split(",")
        )
