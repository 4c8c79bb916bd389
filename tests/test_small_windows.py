"""Small windows (80x24 and 70x20): every dialog fits, or scrolls, with its buttons in
view; the sidebar takes at most about 30% of the width; F1 Help is always in the footer."""

from __future__ import annotations

import pytest
from textual.widgets import Button
from textual.widgets._footer import FooterKey
from tui_support import scripted_loader, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.dialogs import ConfirmScreen, CorruptStoreScreen, RenameScreen
from gemma_chat.tui.screens.settings import SettingsScreen

SIZES = [(80, 24), (70, 20)]


@pytest.fixture
def store(tmp_path):
    with HistoryStore(tmp_path / "history.db") as opened:
        for title in ("Plan a trip to Lisbon next spring", "Regex for digits"):
            cid = opened.create(title=title, origin="app")
            opened.add(cid, MessageRecord("user", title))
        yield opened


def make_app(vocab, store) -> GemmaChatApp:
    return GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]), store=store)


def in_view(app: GemmaChatApp, widget) -> bool:
    """:func:`assert_in_view` as a condition."""
    try:
        assert_in_view(app, widget)
    except AssertionError:
        return False
    return True


def assert_in_view(app: GemmaChatApp, widget) -> None:
    """The widget is wholly on screen and nothing covers its middle."""
    region, screen = widget.region, app.screen.region
    assert region.area and screen.contains_region(region), (widget, region, screen)
    middle = region.center
    on_top, _ = app.screen.get_widget_at(int(middle[0]), int(middle[1]))
    assert on_top is widget or widget in on_top.ancestors_with_self, (widget, on_top)


def footer_keys(app: GemmaChatApp) -> list[FooterKey]:
    return list(app.screen.query(FooterKey))


@pytest.mark.parametrize("size", SIZES)
async def test_dialogs_fit_with_their_buttons(vocab, store, size) -> None:
    app = make_app(vocab, store)
    dialogs = [
        lambda: SettingsScreen("Be brief. " * 40, app.sampling, app.repeat_guard),
        lambda: RenameScreen("Plan a trip to Lisbon next spring"),
        lambda: ConfirmScreen("Delete “Plan a trip”?", "Its 1 message will be removed.", "Delete"),
        lambda: CorruptStoreScreen("/home/user/.local/share/gemma-chat/history.db", "bad"),
    ]
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for make in dialogs:
            screen = make()
            app.push_screen(screen)
            await wait_until(pilot, lambda: app.screen is screen)  # noqa: B023
            await settle(pilot)
            buttons = list(screen.query(Button))
            assert buttons
            for button in buttons:
                assert_in_view(app, button)
            screen.dismiss(None)
            await settle(pilot)


@pytest.mark.parametrize("size", [*SIZES, (120, 30)])
async def test_the_sidebar_takes_about_30_percent(vocab, store, size) -> None:
    app = make_app(vocab, store)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await pilot.press("ctrl+b")
        await settle(pilot)
        width = app.switcher.sidebar.size.width
        assert 18 <= width <= max(round(size[0] * 0.3), 18) and width <= 32, width


@pytest.mark.parametrize("size", SIZES)
async def test_f1_help_is_always_in_the_footer(vocab, store, size) -> None:
    app = make_app(vocab, store)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        for step in ("main", "sidebar"):  # the sidebar lists its own keys in front
            if step == "sidebar":
                await pilot.press("ctrl+b")
            await settle(pilot)
            keys = footer_keys(app)
            assert keys and keys[0].action == "help", (step, [k.action for k in keys])
            # Once the screen has settled (a toast may slide over it for a moment).
            await wait_until(pilot, lambda k=keys[0]: in_view(app, k))
            assert_in_view(app, keys[0])
        await pilot.press("escape", "f2")
        await settle(pilot)
        await pilot.press("f1")  # on a dialog too, F1 opens the help, and F1 closes it
        await settle(pilot)
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("f1")
        await settle(pilot)
        assert type(app.screen).__name__ == "SettingsScreen"
