"""What the user types or a model writes is never parsed as Textual markup, and a reply's
links never open on a click (review finding 3).

Notifications quote typed text (`/theme NAME`, `/set KEY VALUE`, `--theme NAME`); with
markup on, `[/]` crashed the app with a MarkupError and `[@click=app.quit]` ran an action.
"""

from __future__ import annotations

from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply

HOSTILE = ["/theme [/]", "/set [/] 1", "/theme [@click=app.quit]q[/]", "/set top_k [b]x[/b]"]


async def test_typed_markup_is_shown_literally(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["ok"]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for command in HOSTILE:
            before = len(notifications(app))
            await send(pilot, command)
            await settle(pilot)
            assert app.is_running, command
            # Each answer quotes what was typed, as typed.
            typed = command.split(" ", 2)[-1 if command.startswith("/theme") else 1]
            assert any(typed in note for note in notifications(app)[before:]), command
        # A toast renders its text when it is drawn, which may be after this check: so
        # assert that nothing is ever handed to Textual as markup.
        assert all(not note.markup for note in app._notifications)


async def test_a_theme_name_with_markup_is_shown_literally(vocab) -> None:
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["ok"]), theme="[/]")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        assert app.is_running
        assert any("[/]" in note for note in notifications(app))
        assert all(not note.markup for note in app._notifications)


async def test_reply_links_do_not_open(vocab) -> None:
    reply = "See [the docs](http://evil.example/steal) now."
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, [reply]))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and bool(app.chat.query(ModelReply)))
        bodies = app.chat.query_one(ModelReply).query(".reply-body")
        assert bodies and all(not body._open_links for body in bodies)
