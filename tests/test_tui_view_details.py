"""Small things a user trips on: the context meter moves while a reply streams, the status
bar keeps the quantization while streaming, and a short conversation starts at the top of
the view (no empty rows above it) after Ctrl+N or a resize."""

from __future__ import annotations

import re
from pathlib import Path

from tui_support import send, settle, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.chat.conversation import Role
from gemma_chat.config.settings import Settings
from gemma_chat.models.resolve import inspect_model
from gemma_chat.tui.app import GemmaChatApp
from gemma_chat.tui.widgets.user_message import UserMessage

LONG = "\n\n".join(f"Paragraph {i}: " + "words " * 25 for i in range(25))


def app_for(vocab, replies, *, delay_s: float = 0.0, info_path: Path | None = None):
    def load(settings, notify):
        info = inspect_model(info_path) if info_path is not None else None
        return info, ScriptedBackend(vocab, replies, delay_s=delay_s)

    return GemmaChatApp(Settings(), loader=load)


def meter(app: GemmaChatApp) -> int:
    text = str(app.query_one("#status-meter").render())
    match = re.search(r"ctx ~?([\d,]+)/", text)
    return int(match.group(1).replace(",", "")) if match else -1


async def test_the_meter_moves_while_a_reply_streams(vocab) -> None:
    app = app_for(vocab, [LONG], delay_s=0.01)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "go")
        await wait_until(pilot, lambda: meter(app) > 0)
        before = meter(app)
        await wait_until(pilot, lambda: meter(app) >= before + 30)
        assert app.generating  # it moved before the reply ended
        app.replies.stop()  # the rest would only take time: a stopped reply is counted too
        await wait_until(pilot, lambda: not app.generating)
        await settle(pilot)
        counted = app.engine.count_tokens(app.conversation, "")
        await wait_until(pilot, lambda: meter(app) == counted)  # and ends on the true count


async def test_the_status_bar_keeps_the_quantization_while_streaming(vocab, demo_path) -> None:
    app = app_for(vocab, [LONG], delay_s=0.01, info_path=demo_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "go")
        await wait_until(pilot, lambda: "tok/s…" in str(app.query_one("#status-speed").render()))
        app.query_one("#status-speed").update("TTFT 0.05s · 12345.6 tok/s…")  # a wide one
        await settle(pilot)
        assert app.generating
        quant = app.query_one("#status-quant")
        shown = str(quant.render())
        assert shown == "· Q4_K_M" and quant.display
        assert quant.region.width >= len(shown)  # on screen, whole
        first_row = app.export_screenshot()
        assert "Q4_K_M" in first_row
        app.replies.stop()
        await wait_until(pilot, lambda: not app.generating)


async def first_message_at_top(pilot) -> None:
    app = pilot.app
    await settle(pilot)
    await wait_until(pilot, lambda: app.chat.scroll_y == 0)
    message = app.chat.query(UserMessage).first()
    # The view's first row is the message's margin row: no empty rows above it.
    assert message.region.y - app.chat.region.y <= 1, (message.region, app.chat.region)


async def test_a_short_conversation_starts_at_the_top(vocab) -> None:
    app = app_for(vocab, [LONG, "short", "short again"])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "a long one")
        await wait_until(pilot, lambda: any(t.role is Role.MODEL for t in app.conversation.turns))
        await wait_until(pilot, lambda: app.chat.scroll_y == app.chat.max_scroll_y > 10)
        await pilot.press("ctrl+n")
        await settle(pilot)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        await first_message_at_top(pilot)
        await pilot.resize_terminal(100, 34)
        await first_message_at_top(pilot)
        await pilot.resize_terminal(70, 20)
        await first_message_at_top(pilot)
        # A long conversation still follows new text at the bottom.
        await send(pilot, LONG[:1500])
        await wait_until(pilot, lambda: len(app.conversation.turns) == 4)
        await wait_until(pilot, lambda: app.chat.max_scroll_y > 0)
        await wait_until(pilot, lambda: app.chat.scroll_y == app.chat.max_scroll_y)


async def test_who_speaks_is_labelled_and_the_time_is_in_the_tooltip(vocab, demo_path) -> None:
    from gemma_chat.tui.widgets.chat_log import ModelReply

    app = app_for(vocab, ["Hello there."], info_path=demo_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "hi")
        await wait_until(pilot, lambda: len(app.conversation.turns) == 2)
        await settle(pilot)
        user = app.chat.query(UserMessage).first()
        reply = app.chat.query(ModelReply).first()
        assert str(user.render()).split("\n")[0] == "You"
        assert str(reply.query_one(".speaker").render()) == "scripted.gguf"  # the model's file
        assert re.fullmatch(r"You · sent \d\d:\d\d:\d\d", str(user.tooltip))
        assert re.fullmatch(r"scripted\.gguf · started \d\d:\d\d:\d\d", str(reply.tooltip))
        assert user.text == "hi" and reply.text == "Hello there."  # the texts stay exact
