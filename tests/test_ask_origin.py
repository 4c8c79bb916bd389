"""Conversations started by ``ask`` are marked (``origin``): ``ask -c`` continues the most
recent one ``ask`` started, never a chat from the app; the app's sidebar marks them and
can hide them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import run_cli
from tui_support import scripted_loader, settle, wait_until

from gemma_chat.cli.exchange import find_conversation
from gemma_chat.config.settings import Settings
from gemma_chat.errors import UsageError
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.tui.app import GemmaChatApp


@pytest.fixture
def store(tmp_path: Path):
    with HistoryStore(tmp_path / "history.db") as opened:
        yield opened


def conversation(store: HistoryStore, title: str, origin: str | None) -> int:
    cid = store.create(title=title, origin=origin)
    store.add(cid, MessageRecord("user", title))
    time.sleep(0.01)  # updated_at orders them
    return cid


def test_ask_continue_never_picks_an_app_chat(store) -> None:
    asked = conversation(store, "from ask", "ask")
    chatted = conversation(store, "in the app", "app")
    assert find_conversation(store, True, None, "--conversation", origin="ask").id == asked
    # The app's --continue opens the most recent of any.
    assert find_conversation(store, True, None, "--resume").id == chatted
    # --conversation ID reaches any conversation.
    assert find_conversation(store, False, chatted, "--conversation", origin="ask").id == chatted


def test_a_conversation_from_before_origins_counts_as_any(store) -> None:
    conversation(store, "from ask", "ask")
    legacy = conversation(store, "older gemma-chat", None)
    assert find_conversation(store, True, None, "--conversation", origin="ask").id == legacy


def test_only_app_chats_is_a_clear_usage_error(store) -> None:
    conversation(store, "in the app", "app")
    with pytest.raises(UsageError, match="no conversation started by ask to continue"):
        find_conversation(store, True, None, "--conversation", origin="ask")


@pytest.mark.slow
def test_ask_c_end_to_end(demo_path: Path) -> None:
    def ask(*args: str) -> dict:
        proc = run_cli(*args, "-n", "4", "--temperature", "0", "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    first = ask("ask", "My name is Ada.")
    with HistoryStore() as store:
        assert store.get(first["conversation_id"]).origin == "ask"
        time.sleep(0.01)
        app_chat = conversation(store, "a chat in the app", "app")
    second = ask("ask", "-c", "What is my name?")
    assert second["conversation_id"] == first["conversation_id"] != app_chat


async def test_the_sidebar_marks_ask_conversations_and_hides_them(vocab, store) -> None:
    conversation(store, "one-shot question", "ask")
    conversation(store, "a real chat", "app")
    app = GemmaChatApp(Settings(), loader=scripted_loader(vocab, ["hi"]), store=store)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await pilot.press("ctrl+b")
        await settle(pilot)
        sidebar = app.switcher.sidebar

        def listed() -> list[str]:
            options = sidebar.listing.options
            return [str(option.prompt).split("\n")[0].strip() for option in options[1:]]

        assert listed() == ["a real chat", "one-shot question"]
        ask_line = str(sidebar.listing.options[2].prompt)
        assert "ask" in ask_line.split("\n")[1]  # marked as started by ask
        assert "ask" not in str(sidebar.listing.options[1].prompt).split("\n")[1]
        await pilot.press("a")  # hide what ask started
        await settle(pilot)
        assert listed() == ["a real chat"]
        assert "1 from ask hidden" in str(sidebar.query_one(".sidebar-hint").render())
        app.switcher.refresh_sidebar()  # a refresh keeps the filter
        await settle(pilot)
        assert listed() == ["a real chat"]
        await pilot.press("a")
        await settle(pilot)
        assert listed() == ["a real chat", "one-shot question"]
