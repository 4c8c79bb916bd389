"""Keys people already know from other chat clients and shells: PageUp/PageDown and
Ctrl+Home/Ctrl+End scroll the conversation while the input has focus; Ctrl+D on an empty
input, /exit and /bye quit; Ctrl+C with nothing to stop says how to quit; F1 groups the
keys by where they work."""

from __future__ import annotations

import pytest
from tui_support import fully_rendered, notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.keys import QUIT_HINT
from gemma_chat.tui.screens.help import HelpScreen
from gemma_chat.tui.widgets.prompt_input import PromptInput

LONG = "\n\n".join(f"Paragraph {i}: " + "words " * 30 for i in range(30))


def make_app(vocab, replies=(LONG,)) -> GemmaChatApp:
    return GemmaChatApp(Settings(), loader=scripted_loader(vocab, list(replies)))


async def long_exchange(pilot) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: app.engine is not None)
    await send(pilot, "tell me a lot")
    await wait_until(
        pilot, lambda: not app.generating and len(app.conversation.turns) == 2, timeout=60
    )
    await wait_until(pilot, lambda: fully_rendered(app), timeout=60)
    await settle(pilot)
    await wait_until(pilot, lambda: app.chat.max_scroll_y > 40)
    await wait_until(pilot, lambda: app.chat.scroll_y == app.chat.max_scroll_y)


async def test_scroll_keys_scroll_the_conversation_from_the_input(vocab) -> None:
    app = make_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await long_exchange(pilot)
        app.prompt.focus()
        app.prompt.set_text("a draft\nof two lines")
        await settle(pilot)  # the taller input shrinks the view: the bottom moves
        bottom = app.chat.max_scroll_y
        await pilot.press("pageup")
        await settle(pilot)
        assert isinstance(app.focused, PromptInput)  # the input keeps the focus
        assert app.chat.scroll_y < bottom
        after_one = app.chat.scroll_y
        await pilot.press("pageup")
        await settle(pilot)
        after_two = app.chat.scroll_y
        assert after_two < after_one
        await pilot.press("pagedown")
        await settle(pilot)
        assert app.chat.scroll_y > after_two
        await pilot.press("ctrl+home")
        await settle(pilot)
        assert app.chat.scroll_y == 0
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert app.chat.scroll_y == app.chat.max_scroll_y
        assert app.prompt.text == "a draft\nof two lines"  # the draft is untouched


async def test_ctrl_d_quits_on_an_empty_input_only(vocab) -> None:
    app = make_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        app.prompt.focus()
        app.prompt.set_text("abc")
        app.prompt.move_cursor((0, 1))
        await pilot.press("ctrl+d")  # as in a shell: delete the character on the right
        await settle(pilot)
        assert app.is_running and app.prompt.text == "ac"
        app.prompt.set_text("")
        await pilot.press("ctrl+d")
        await settle(pilot)
        assert not app.is_running


@pytest.mark.parametrize("command", ["/exit", "/bye", "/quit", "/EXIT"])
async def test_exit_and_bye_quit(vocab, command: str) -> None:
    app = make_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, command)
        await settle(pilot)
        assert not app.is_running


async def test_ctrl_c_when_idle_says_how_to_quit(vocab) -> None:
    app = make_app(vocab, ["Hi."])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert app.is_running
        assert notifications(app).count(QUIT_HINT) == 1
        assert "Ctrl+Q quits" in QUIT_HINT
        await send(pilot, "hello")
        await wait_until(pilot, lambda: any(t.role is Role.MODEL for t in app.conversation.turns))
        assert app.is_running and notifications(app).count(QUIT_HINT) == 1


async def test_help_groups_keys_by_where_they_work(vocab) -> None:
    app = make_app(vocab)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        groups = dict(app.keys.help_groups())
        assert list(groups) == [
            "Anywhere",
            "In the input",
            "On a selected message (Alt+Up / Alt+Down, or a click)",
            "In the history sidebar (Ctrl+B)",
            "In search (Ctrl+F)",
            "In dialogs",
        ]

        def ids(title: str) -> set[str]:
            return {binding_id for _, _, binding_id in groups[title] if binding_id}

        # Sidebar keys are listed under the sidebar only, not as if they were global.
        sidebar = {"gemma.history_new", "gemma.history_rename", "gemma.history_delete"}
        assert sidebar <= ids("In the history sidebar (Ctrl+B)")
        assert not sidebar & (ids("Anywhere") | ids("In the input"))
        assert {"gemma.page_up", "gemma.quit_empty", "gemma.newline"} <= ids("In the input")
        assert {"gemma.quit", "gemma.help", "gemma.retry"} <= ids("Anywhere")
        assert "gemma.search_next" in ids("In search (Ctrl+F)")
        assert "gemma.confirm_yes" in ids("In dialogs")
        # Every binding the config can remap is in exactly one group.
        listed = [binding_id for rows in groups.values() for _, _, binding_id in rows]
        every = {b.id for b in app.keys.all_bindings() if b.id}
        assert set(listed) - {""} == every and len([i for i in listed if i]) == len(every)
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await settle(pilot)
        shown = " ".join(str(s.render()) for s in app.screen.query(".help-group"))
        assert "In the history sidebar (Ctrl+B)" in shown and "In dialogs" in shown


async def feed_terminal_bytes(pilot, data: str) -> None:
    """Send bytes through Textual's real input parser, all at once, as a terminal (or
    tmux) delivers a fast key burst."""
    from textual._xterm_parser import XTermParser

    for event in list(XTermParser().feed(data)):
        pilot.app._driver.process_message(event)
    await settle(pilot)
    await pilot.pause(0.2)


@pytest.mark.parametrize(
    ("keys", "burst"), [({}, "A\nBBBd0Z"), ({"gemma.newline": "ctrl+l"}, "A\x0cBBBd0Z")]
)
async def test_a_key_burst_after_ctrl_j_keeps_its_order(vocab, keys, burst) -> None:
    app = GemmaChatApp(Settings(keys=keys), loader=scripted_loader(vocab, ["hi"]))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        app.prompt.focus()
        await feed_terminal_bytes(pilot, burst)
        assert app.prompt.text == "A\nBBBd0Z"  # not "ABBBd0Z\n"
