"""Sending while the model loads: the message is queued, shown as queued, sent when the
model is ready; Esc cancels it, and a failed load gives it back. Nothing typed is lost."""

from __future__ import annotations

import threading

from tui_support import notifications, send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply
from gemma_chat.tui.widgets.queued import QUEUED_NOTE, QueuedMessage
from gemma_chat.tui.widgets.user_message import UserMessage


def gated_app(vocab, *, fail: bool = False) -> tuple[GemmaChatApp, threading.Event]:
    """An app whose model load waits until the test releases it."""
    release = threading.Event()

    def load(settings, notify):
        release.wait(30)
        if fail:
            raise ModelError("not a GGUF model file: broken.gguf")
        return None, ScriptedBackend(vocab, ["the answer"])

    return GemmaChatApp(Settings(), loader=load), release


async def press_enter_with(pilot, text: str) -> None:
    pilot.app.prompt.focus()
    pilot.app.prompt.set_text(text)
    await pilot.press("enter")
    await settle(pilot)


async def test_a_message_sent_while_loading_is_queued_then_sent(vocab) -> None:
    app, release = gated_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app._loading is not None and "queues" in app.prompt.placeholder
        await press_enter_with(pilot, "hello early")
        queued = app.query_one(QueuedMessage)
        assert queued.text == "hello early" and QUEUED_NOTE in str(queued.render())
        assert app.prompt.text == "" and app.conversation.turns == []
        app.prompt.set_text("a draft meanwhile")
        release.set()
        await wait_until(pilot, lambda: any(t.role is Role.MODEL for t in app.conversation.turns))
        await settle(pilot)
        assert [t.text for t in app.conversation.turns] == ["hello early", "the answer"]
        assert not app.query(QueuedMessage)
        assert [w.text for w in app.query(UserMessage)] == ["hello early"]
        assert len(app.query(ModelReply)) == 1
        assert app.prompt.text == "a draft meanwhile"  # the new draft is kept


async def test_esc_cancels_the_queued_message(vocab) -> None:
    app, release = gated_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press_enter_with(pilot, "never mind")
        assert app.query(QueuedMessage)
        await pilot.press("escape")
        await settle(pilot)
        assert not app.query(QueuedMessage) and app.prompt.text == "never mind"
        release.set()
        await wait_until(pilot, lambda: app.engine is not None)
        await settle(pilot)
        assert app.conversation.turns == [] and app.prompt.text == "never mind"


async def test_one_message_waits_at_a_time(vocab) -> None:
    app, release = gated_app(vocab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press_enter_with(pilot, "first")
        await press_enter_with(pilot, "second")
        assert [w.text for w in app.query(QueuedMessage)] == ["first"]
        assert app.prompt.text == "second"
        assert any("already queued" in n for n in notifications(app))
        release.set()
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)


async def test_a_failed_load_gives_the_message_back(vocab) -> None:
    app, release = gated_app(vocab, fail=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press_enter_with(pilot, "anyone there?")
        release.set()
        await wait_until(pilot, lambda: app._loading is None)
        await settle(pilot)
        assert not app.query(QueuedMessage) and app.prompt.text == "anyone there?"
        await send(pilot, "anyone there?")  # no model: refused, and it stays
        assert app.prompt.text == "anyone there?" and app.conversation.turns == []
