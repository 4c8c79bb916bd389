"""No store failure reaches Textual: a damaged history file or one that goes away in the
middle of a session gives one notification, the chat goes on, and the app never crashes
(Pilot, on a real SQLite file damaged for real)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tui_support import notifications, scripted_loader, send, settle, wait_until

from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.sidebar import HistorySidebar
from gemma_chat.tui.widgets.user_message import UserMessage


def make_app(vocab, path: Path, replies=("one", "two"), **kwargs) -> GemmaChatApp:
    return GemmaChatApp(
        Settings(), loader=scripted_loader(vocab, replies), store=HistoryStore(path), **kwargs
    )


async def answered(pilot, count: int) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
    )


def shown(app: GemmaChatApp) -> list[str]:
    return [w.text for w in app.chat.children if isinstance(w, UserMessage | ModelReply)]


def damaged_store(path: Path) -> tuple[int, int]:
    """A store with a good conversation and one whose row was hand-edited into garbage
    (its parameters are not JSON any more)."""
    with HistoryStore(path) as store:
        good = store.create()
        store.add(good, MessageRecord("user", "good question"))
        store.add(good, MessageRecord("model", "good answer", stop_reason="end_of_turn"))
        bad = store.create()
        store.add(bad, MessageRecord("user", "bad question"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE conversations SET params = '{not json' WHERE id = ?", (bad,))
    return good, bad


async def test_a_damaged_history_row_never_crashes_the_app(vocab, tmp_path: Path) -> None:
    _, bad = damaged_store(tmp_path / "history.db")
    app = make_app(vocab, tmp_path / "history.db", resume=bad)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await wait_until(pilot, lambda: any("Could not open" in n for n in notifications(app)))
        assert app.conversation_id is None and shown(app) == []
        await pilot.press("ctrl+b")  # the sidebar lists every conversation
        await settle(pilot)
        listing = app.query_one(HistorySidebar).listing
        lines = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
        assert any("history store failed" in line for line in lines), lines
        await pilot.press("ctrl+b")
        await send(pilot, "still here?")
        await answered(pilot, 1)
        assert shown(app) == ["still here?", "one"]
        assert app.is_running
    assert not app.return_code  # quit normally: no crash on the way (that would be 1)


async def test_a_conversation_deleted_elsewhere_mid_session_ends_saving_with_one_notice(
    vocab, tmp_path: Path
) -> None:
    path = tmp_path / "history.db"
    app = make_app(vocab, path)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "first")
        await answered(pilot, 1)
        with HistoryStore(path) as other:  # `gemma-chat history delete` in another terminal
            other.delete(app.conversation_id)
        await send(pilot, "second")
        await answered(pilot, 2)
        await pilot.press("ctrl+b")
        await settle(pilot)
        await pilot.press("ctrl+b")
        await send(pilot, "/rename new title")
        await settle(pilot)
        failures = [n for n in notifications(app) if "Could not save" in n]
        assert len(failures) == 1, notifications(app)
        assert shown(app) == ["first", "one", "second", "two"]
        assert app.is_running
    assert not app.return_code
