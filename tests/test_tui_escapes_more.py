"""Untrusted text in the app's less travelled places (review finding 8): the whole-text
view of a huge message, and a model id chosen by a remote server in the status bar.

Pilot on a real SQLite history and a real vocabulary, and the real remote backend on a
loopback server whose only model has a hostile id.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from escapes import CORPUS, SHOWN
from test_terminal_escapes import HostileServer
from tui_support import scripted_loader, settle, wait_until

from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.sanitize import has_controls
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.whole_text import WholeTextScreen
from gemma_chat.tui.widgets.preview import PREVIEW_CHARS
from gemma_chat.tui.widgets.user_message import UserMessage


def assert_shown_safely(text: str) -> None:
    """Shown with the ``␛`` stand-in, and no control a terminal acts on."""
    assert SHOWN in text
    assert not has_controls(text), [c for c in text if has_controls(c)][:10]


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


async def test_the_whole_text_of_a_huge_message_is_shown_safely(vocab, tmp_path: Path) -> None:
    # Longer than the chat's preview, so only the whole-text view shows all of it.
    question = "Hostile " + CORPUS + "\n\n" + "A plain sentence.\n" * (PREVIEW_CHARS // 10)
    path = tmp_path / "history.db"
    with HistoryStore(path) as store:
        cid = store.create()
        store.add(cid, MessageRecord("user", question))
        store.add(cid, MessageRecord("model", "ok", stop_reason="end_of_turn"))
    app = GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, ["ok"]), store=HistoryStore(path), resume=cid
    )
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: bool(app.chat.query(UserMessage)), timeout=60)
        await settle(pilot)
        app.chat.query_one(UserMessage).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, WholeTextScreen))
        screen = app.screen
        assert screen.text == question  # kept as it is
        shown = str(screen.query_one("#whole-text").render())
        assert "Hostile" in shown
        assert_shown_safely(shown)
        await pilot.press("escape")


async def test_a_server_chosen_model_id_in_the_status_bar(hostile_server: HostileServer) -> None:
    # No model named: the app uses the one the server lists, whose id is hostile.
    app = GemmaChatApp(Settings(backend="openai", base_url=hostile_server.url("hostile")))
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await settle(pilot)
        shown = str(app.query_one("#status-model").render())
        assert "evil-model" in shown
        assert_shown_safely(shown)
