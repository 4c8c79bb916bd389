"""The app's worker messages: typed dataclasses, and a loader's warnings reach the user
as a posted :class:`Notice` (the load worker never calls into the UI itself)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tui_support import notifications, wait_until

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.tui import messages
from gemma_chat.tui.app import GemmaChatApp


def test_every_message_is_a_dataclass_with_its_fields() -> None:
    for name in ("ModelLoaded", "ModelLoadFailed", "Notice", "ReplyDelta", "TokensCounted"):
        cls = getattr(messages, name)
        assert dataclasses.is_dataclass(cls), name
    delta = messages.ReplyDelta("hi", tokens=2)
    assert (delta.text, delta.tokens, delta.handler_name) == ("hi", 2, "on_reply_delta")
    assert messages.ReplyDelta("hi") != messages.ReplyDelta("hi")  # identity, as Textual's


async def test_a_loader_warning_is_posted_as_a_notice(vocab) -> None:
    seen: list[str] = []

    def load(settings: Settings, notify: Any) -> tuple[Any, Any]:
        notify("warning: the model is bigger than\x1b[2J the free memory")
        seen.append("loaded")
        return None, ScriptedBackend(vocab, ["ok"], n_ctx=4096)

    app = GemmaChatApp(Settings(), loader=load)
    async with app.run_test() as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await wait_until(pilot, lambda: any("bigger" in n for n in notifications(app)))
        (shown,) = [n for n in notifications(app) if "bigger" in n]
        assert "\x1b" not in shown  # the one sanitizer, in notify
    assert seen == ["loaded"]
