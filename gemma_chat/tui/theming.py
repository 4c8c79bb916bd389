"""Registering the theme files and remembering the user's choice (an App mixin)."""

from __future__ import annotations

from typing import Any

from gemma_chat import paths
from gemma_chat.config import ui_prefs as state
from gemma_chat.tui.themes import DEFAULT_THEME, failure_message, load_themes


class ThemeSupport:
    """Theme handling for :class:`~gemma_chat.tui.app.GemmaChatApp`.

    Choice order: ``--theme``, then the theme last picked in the app (remembered in the
    state file), then ``theme`` in the config, then the default. Textual's built-in
    themes stay available.
    """

    settings: Any
    theme: str
    available_themes: dict[str, Any]

    def setup_themes(self, cli_theme: str | None) -> None:
        """Register the shipped and user themes, report bad files once, pick the theme."""
        loaded, failed = load_themes(paths.config_dir() / "themes")
        for theme in loaded:
            self.register_theme(theme)  # type: ignore[attr-defined]
        if failed:
            self.notify(  # type: ignore[attr-defined]
                failure_message(failed), severity="warning", timeout=15, markup=False
            )
        wanted = cli_theme or state.load_state().get("theme") or self.settings.theme
        if wanted and wanted not in self.available_themes:
            self.notify(  # type: ignore[attr-defined]
                f"Unknown theme {wanted!r}; using {DEFAULT_THEME}.", severity="warning"
            )
            wanted = None
        self.theme = wanted or DEFAULT_THEME
        self.watch(self, "theme", self._remember_theme, init=False)  # type: ignore[attr-defined]

    def select_theme(self, name: str) -> None:
        """``/theme NAME``; with no name, open Textual's theme picker."""
        if not name:
            self.action_change_theme()  # type: ignore[attr-defined]
            return
        if name not in self.available_themes:
            names = ", ".join(sorted(self.available_themes))
            self.notify(f"Unknown theme {name!r}. Themes: {names}", severity="error")  # type: ignore[attr-defined]
            return
        self.theme = name

    def _remember_theme(self, name: str) -> None:
        state.save_state(theme=name)
