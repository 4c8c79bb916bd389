"""Key bindings: the config's remapping and the help screen (an App mixin)."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding

from gemma_chat.tui.keyspec import check_keymap, keymap_message
from gemma_chat.tui.widgets.prompt_input import PromptInput


class KeysSupport:
    """Binding ids, remapping through ``[keys]`` and the F1 help screen."""

    settings: Any
    _keymap: dict[str, str]

    def apply_keymap(self) -> None:
        """Apply ``[keys]`` from the config. Entries with an unknown binding id or a key
        that is not a key are skipped and reported once, in one notification."""
        known = {binding.id for binding in self._all_bindings() if binding.id}
        keymap, problems = check_keymap(self.settings.keys, known)
        if problems:
            self.notify(  # type: ignore[attr-defined]
                keymap_message(problems), severity="warning", timeout=15, markup=False
            )
        self.set_keymap(keymap)  # type: ignore[attr-defined]

    def _all_bindings(self) -> list[Binding]:
        from gemma_chat.tui.screens.dialogs import ConfirmScreen, CorruptStoreScreen, RenameScreen
        from gemma_chat.tui.screens.help import HelpScreen
        from gemma_chat.tui.screens.search import SearchScreen
        from gemma_chat.tui.screens.settings import SettingsScreen
        from gemma_chat.tui.widgets.sidebar import HistorySidebar

        found = []
        owners = (type(self), PromptInput, HistorySidebar, SearchScreen, HelpScreen)
        dialogs = (SettingsScreen, RenameScreen, ConfirmScreen, CorruptStoreScreen)
        for owner in owners + dialogs:
            found += [b for b in owner.BINDINGS if isinstance(b, Binding)]
        return found

    def action_help(self) -> None:
        """Show every key and command."""
        from gemma_chat.tui.screens.help import HelpScreen

        keys = [(self._keys_display(b), b.description, b.id or "") for b in self._all_bindings()]
        self.push_screen(  # type: ignore[attr-defined]
            HelpScreen(keys)
        )

    def _keys_display(self, binding: Binding) -> str:
        keys = self._keymap.get(binding.id, binding.key) if binding.id else binding.key
        return " / ".join(
            self.get_key_display(  # type: ignore[attr-defined]
                Binding(key.strip(), binding.action)
            )
            for key in keys.split(",")
        )
