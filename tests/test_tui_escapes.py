"""Untrusted text never drives the terminal in the app (issue 10, item 1).

Pilot tests on a real SQLite history and a real vocabulary: a resumed conversation whose
title, system prompt and messages hold the hostile corpus, a streamed reply and a model
name carrying it; the sidebar, search, dialogs, settings, the input and notifications.
Each asserts that what the widgets render shows ``␛`` and holds no control character.
One test runs the real app in a pty and asserts on the raw bytes the terminal receives.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from escapes import CORPUS, FILE_SAFE, SHOWN, TUI_FORBIDDEN, leaked
from tinygemma import build_tiny_gemma2
from tui_support import notifications, send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore, MessageRecord
from gemma_chat.sanitize import has_controls
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.screens.dialogs import ConfirmScreen, RenameScreen
from gemma_chat.tui.screens.models import ModelPicker
from gemma_chat.tui.screens.search import SearchScreen
from gemma_chat.tui.screens.settings import SettingsScreen
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.user_message import UserMessage


def hostile_conversation(store: HistoryStore) -> int:
    cid = store.create(title=CORPUS, system=CORPUS)
    store.add(cid, MessageRecord("user", "Hostile question " + CORPUS))
    store.add(cid, MessageRecord("model", CORPUS, stop_reason="end_of_turn", model=CORPUS))
    return cid


def hostile_loader(vocab: Any, replies: list[str]) -> Callable[..., tuple[Any, Any]]:
    """Loads a scripted backend whose model name is the corpus (as a GGUF or a server
    could name it)."""

    def load(settings: Settings, notify: Callable[[str], None]) -> tuple[Any, Any]:
        return None, ScriptedBackend(vocab, replies, model="evil " + CORPUS)

    return load


def screen_text(app: GemmaChatApp) -> str:
    """Everything on the screen, as the app renders it (an SVG screenshot's text)."""
    return app.export_screenshot()


def assert_shown_safely(text: str) -> None:
    """Shown with the ``␛`` stand-in, and no control a terminal acts on."""
    assert SHOWN in text
    assert not has_controls(text), [c for c in text if has_controls(c)][:10]


async def test_resumed_conversation_sidebar_and_status_bar(vocab, store) -> None:
    cid = hostile_conversation(store)
    app = GemmaChatApp(Settings(), loader=hostile_loader(vocab, [CORPUS]), store=store, resume=cid)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and app.conversation_id == cid)
        await settle(pilot)
        # The widgets keep the text as it is; what they render is safe.
        user, reply = app.query_one(UserMessage), app.query_one(ModelReply)
        assert user.text.endswith(CORPUS) and reply.text == CORPUS
        assert_shown_safely(str(user.render()))
        model = str(app.query_one("#status-model").render())
        assert_shown_safely(model)
        await pilot.press("ctrl+b")
        await settle(pilot)
        option = app.switcher.sidebar.listing.get_option(str(cid))
        assert_shown_safely(str(option.prompt))
        assert_shown_safely(screen_text(app))


async def test_a_streamed_reply_and_notifications(vocab) -> None:
    reply_text = CORPUS + "\n\nline one\r\nline two\r"
    app = GemmaChatApp(Settings(), loader=hostile_loader(vocab, [reply_text]))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: not app.generating and len(app.conversation.turns) == 2)
        reply = app.query_one(ModelReply)
        await wait_until(pilot, lambda: reply.rendering is not None and reply.rendering.done())
        assert reply.text.startswith(CORPUS)  # kept as it came
        # What the reply renders: the lone CR held back at the very end is shown too.
        assert reply.segments[-1].source.endswith("line two\u240d")
        await settle(pilot)
        assert_shown_safely(screen_text(app))
        # Notifications quote untrusted text (server errors, titles): one place for all.
        app.notify("The reply was cut off: " + CORPUS, title=CORPUS)
        await settle(pilot)
        assert_shown_safely(notifications(app)[-1])
        assert_shown_safely(screen_text(app))


async def test_search_results(vocab, store) -> None:
    hostile_conversation(store)
    app = GemmaChatApp(Settings(), loader=hostile_loader(vocab, ["ok"]), store=store)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchScreen))
        await pilot.press(*"Hostile")
        await settle(pilot)
        results = app.screen.query_one("#search-results")
        assert results.option_count >= 1
        assert_shown_safely(str(results.get_option_at_index(0).prompt))
        assert_shown_safely(screen_text(app))


async def test_dialogs_settings_and_the_input(vocab, store) -> None:
    cid = hostile_conversation(store)
    app = GemmaChatApp(Settings(), loader=hostile_loader(vocab, ["ok"]), store=store, resume=cid)
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None and app.conversation_id == cid)
        await pilot.press("ctrl+b")
        await settle(pilot)
        # Rename: the input starts with the title made safe; unchanged, nothing is renamed.
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RenameScreen))
        assert_shown_safely(screen_text(app))
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, RenameScreen))
        assert store.get(cid).title == CORPUS
        # Delete: the confirmation quotes the title.
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert_shown_safely(screen_text(app))
        await pilot.press("escape")
        await settle(pilot)
        # Settings: the stored system prompt, shown safely and kept exactly when saved.
        await pilot.press("escape")  # leave the sidebar
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        assert_shown_safely(screen_text(app))
        app.screen.query_one("#settings-save").press()
        await wait_until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        assert app.conversation.system == CORPUS.strip()
        # Ctrl+O puts the stored question back into the input.
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert app.prompt.text.startswith("Hostile question")
        assert_shown_safely(app.prompt.text)
        assert_shown_safely(screen_text(app))


@pytest.mark.slow
async def test_model_picker(tmp_path: Path, tiny_models, monkeypatch) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    build_tiny_gemma2(folder / f"evil{FILE_SAFE}.gguf", ("Hi",), name=CORPUS)
    shutil.copy(tiny_models["runaway"].path, folder / "plain.gguf")
    monkeypatch.setenv("GEMMA_CHAT_MODELS_DIR", str(folder))
    app = GemmaChatApp(Settings(model=str(folder / "plain.gguf")))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=60)
        await send(pilot, "/model")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPicker))
        picker = app.screen
        await wait_until(pilot, lambda: bool(picker.choices), timeout=60)
        await settle(pilot)
        names = [choice.name for choice in picker.choices]
        assert any(name.startswith("evil\x1b") for name in names), names
        listing = picker.query_one("#models-list")
        prompts = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
        evil = next(p for p in prompts if "evil" in p)
        assert_shown_safely(evil)
        assert_shown_safely(screen_text(app))


@pytest.mark.slow
def test_the_real_app_in_a_pty(tiny_models, tmp_path: Path) -> None:
    """``gemma-chat --resume ID`` on a terminal, then the sidebar: none of the payload's
    sequences reach the pty (the app's own alternate screen and mouse modes do)."""
    import pty

    with HistoryStore() as store:
        cid = hostile_conversation(store)
    model = tiny_models["runaway"].path
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemma_chat", "--resume", str(cid), "--model", str(model)],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"},
        close_fds=True,
    )
    os.close(child_fd)
    seen = b""

    def read_until(done: Callable[[], bool], timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if select.select([main_fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(main_fd, 65536)
                except OSError:
                    return

    try:
        read_until(lambda: b"runaway" in seen and SHOWN.encode() in seen, 60)
        assert b"runaway" in seen and SHOWN.encode() in seen, seen[-2000:]
        os.write(main_fd, b"\x02")  # Ctrl+B: the sidebar lists the title
        mark = len(seen)
        read_until(lambda: b"New conversation" in seen[mark:], 15)
        read_until(lambda: False, 1.0)  # let it draw
        os.write(main_fd, b"\x11")  # Ctrl+Q
        read_until(lambda: proc.poll() is not None, 30)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main_fd)
    assert leaked(seen, TUI_FORBIDDEN) == []
