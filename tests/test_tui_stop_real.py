"""Stopping a real model in the app: Esc and Ctrl+C during a reply of the demo model, in
Pilot, with the real loader and a real SQLite history file. The partial reply is kept,
marked stopped, saved, and the next message works on the same loaded model."""

from __future__ import annotations

import pytest
from tui_support import send, wait_until

from gemma_chat.chat.conversation import Role, StopReason
from gemma_chat.config.settings import Settings
from gemma_chat.history.store import HistoryStore
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.chat_log import ModelReply

pytestmark = pytest.mark.slow

LONG_REPLY_TOKENS = 200
"""Far more than the reply streams before the key is pressed."""


def replies(app: GemmaChatApp) -> int:
    return sum(turn.role is Role.MODEL for turn in app.conversation.turns)


async def reply_done(pilot, count: int) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: not app.is_running or (not app.generating and replies(app) >= count),
        timeout=120,
    )
    assert app.is_running  # Ctrl+C stops the reply, never the app


@pytest.mark.parametrize("key", ["escape", "ctrl+c"])
async def test_stopping_the_demo_model_keeps_the_partial_reply(demo_path, key: str) -> None:
    app = GemmaChatApp(Settings(model="demo", ctx=1024))
    app.sampling = app.sampling.model_copy(
        update={"max_tokens": LONG_REPLY_TOKENS, "temperature": 0.0, "seed": 1}
    )
    # A model that loops must still be running when the key is pressed.
    app.repeat_guard = app.repeat_guard.model_copy(update={"enabled": False})
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None, timeout=120)
        await send(pilot, "Count from 1 to 500, one number per line.")
        await wait_until(
            pilot, lambda: bool(app.query(ModelReply)) and len(app.query_one(ModelReply).text) > 8
        )
        await pilot.press(key)
        await reply_done(pilot, 1)

        turn = app.conversation.turns[-1]
        assert turn.stop_reason is StopReason.CANCELLED and turn.partial
        assert turn.text.strip()
        assert app.last_done is not None
        stopped_tokens = app.last_done.stats.completion_tokens
        assert 0 < stopped_tokens < LONG_REPLY_TOKENS  # it really stopped
        reply = app.query_one(ModelReply)
        assert reply.text == turn.text  # what was shown is what is kept
        assert reply.has_class("-stopped")
        assert "stopped by you" in str(reply.query_one(".stop-marker").render())
        cid = app.conversation_id
        assert cid is not None

        # The same loaded model answers the next message, after the stopped one.
        await send(pilot, "/set max_tokens 6")
        await send(pilot, "Say hello.")
        await reply_done(pilot, 2)
        assert [t.role for t in app.conversation.turns] == [Role.USER, Role.MODEL] * 2
        assert app.conversation.turns[1].text == turn.text
        nxt = app.conversation.turns[-1]
        assert nxt.stop_reason in (StopReason.END_OF_TURN, StopReason.MAX_TOKENS)
        assert nxt.text.strip()

    with HistoryStore() as store:  # the real file, read after the app has closed it
        messages = store.messages(cid)
    assert [(m.role, m.text) for m in messages] == [
        ("user", "Count from 1 to 500, one number per line."),
        ("model", turn.text),
        ("user", "Say hello."),
        ("model", nxt.text),
    ]
    assert (messages[1].stop_reason, messages[1].partial) == ("cancelled", True)
    assert messages[1].completion_tokens == stopped_tokens
    assert messages[3].stop_reason == nxt.stop_reason.value
