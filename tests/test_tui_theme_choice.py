"""Choosing a theme: one command-palette entry for themes, a picker that marks the current
theme, and a confirmation when ``/theme NAME`` (or the picker) changes it."""

from __future__ import annotations

from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.theming import ThemePicker


async def test_one_palette_entry_for_themes(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        titles = [str(command.title) for command in app.get_system_commands(app.screen)]
        assert [t for t in titles if "theme" in t.lower()] == ["/theme NAME"]


async def test_the_picker_marks_the_current_theme(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]), theme="gemma-dusk")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        picker = ThemePicker(app.screen)
        shown = [str(hit.display) async for hit in picker.discover()]
        assert "gemma-dusk  ● current" in shown
        assert [s for s in shown if "current" in s] == ["gemma-dusk  ● current"]
        assert "gemma-light" in shown and "textual-dark" in shown
        await send(pilot, "/theme")  # opens it
        await settle(pilot)
        assert type(app.screen).__name__ == "CommandPalette"


async def test_theme_name_confirms(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "/theme gemma-light")
        await settle(pilot)
        assert app.theme == "gemma-light"
        assert "Theme: gemma-light (remembered for next time)." in notifications(app)
        await send(pilot, "/theme gemma-light")
        await settle(pilot)
        assert notifications(app)[-1] == "The theme is gemma-light already."
