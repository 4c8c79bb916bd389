"""Registering the theme files and remembering the user's choice (a collaborator the
app owns)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider

from gemma_chat import paths
from gemma_chat.config import ui_prefs as state
from gemma_chat.tui.themes import DEFAULT_THEME, failure_message, load_themes


class ThemeService:
    """Theme handling for :class:`~gemma_chat.tui.app.GemmaChatApp`.

    Choice order: ``--theme``, then the theme last picked in the app (remembered in the
    state file), then ``theme`` in the config, then the default. Textual's built-in
    themes stay available.

    Args:
        app: The app whose themes these are.
    """

    def __init__(self, app: App[None]) -> None:
        self._app = app

    def setup(self, cli_theme: str | None, config_theme: str | None) -> None:
        """Register the shipped and user themes, report bad files once, pick the theme."""
        app = self._app
        loaded, failed = load_themes(paths.config_dir() / "themes")
        for theme in loaded:
            app.register_theme(theme)
        if failed:
            app.notify(failure_message(failed), severity="warning", timeout=15, markup=False)
        wanted = cli_theme or state.load_state().get("theme") or config_theme
        if wanted and wanted not in app.available_themes:
            app.notify(f"Unknown theme {wanted!r}; using {DEFAULT_THEME}.", severity="warning")
            wanted = None
        app.theme = wanted or DEFAULT_THEME
        app.watch(app, "theme", self._remember, init=False)

    def select(self, name: str) -> None:
        """``/theme NAME``; with no name, open the theme picker (the current theme
        marked). Either way the change is confirmed in a notification."""
        app = self._app
        if not name:
            self.pick()
            return
        if name not in app.available_themes:
            names = ", ".join(sorted(app.available_themes))
            app.notify(f"Unknown theme {name!r}. Themes: {names}", severity="error")
            return
        if name == app.theme:
            app.notify(f"The theme is {name} already.")
            return
        app.theme = name

    def pick(self) -> None:
        """The theme picker: every theme, the current one marked."""
        from textual.command import CommandPalette

        self._app.push_screen(
            CommandPalette(providers=[ThemePicker], placeholder="Search for themes…")
        )

    def _remember(self, name: str) -> None:
        state.save_state(theme=name)
        self._app.notify(f"Theme: {name} (remembered for next time).", key="theme")


class ThemePicker(Provider):
    """The themes, for the command palette: the current one marked, sorted by name."""

    def _themes(self) -> list[tuple[str, str]]:
        current = self.app.theme
        return [
            (name, f"{name}  ● current" if name == current else name)
            for name in sorted(self.app.available_themes)
        ]

    def _choose(self, name: str) -> Callable[[], None]:
        def choose() -> None:
            self.app.theme = name

        return choose

    async def discover(self) -> Hits:
        for name, shown in self._themes():
            yield DiscoveryHit(shown, self._choose(name))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, shown in self._themes():
            if (score := matcher.match(shown)) > 0:
                yield Hit(score, matcher.highlight(shown), self._choose(name))
