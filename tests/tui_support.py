"""Helpers for the Pilot tests: a scripted loader, polling, notifications."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from gemma_chat.backend.scripted import ScriptedBackend
from gemma_chat.config.settings import Settings
from gemma_chat.errors import ModelError
from gemma_chat.tui.app import GemmaChatApp


def scripted_loader(vocab: Any, replies: Sequence[str], delay_s: float = 0.0, n_ctx: int = 4096):
    """A loader that 'loads' a ScriptedBackend (and records every load's settings)."""
    loads: list[Settings] = []

    def load(settings: Settings, notify: Callable[[str], None]) -> tuple[Any, Any]:
        loads.append(settings)
        if settings.model and settings.model.endswith("broken.gguf"):
            raise ModelError(f"not a GGUF model file: {settings.model}")
        return None, ScriptedBackend(vocab, replies, delay_s=delay_s, n_ctx=n_ctx)

    load.loads = loads  # type: ignore[attr-defined]
    return load


async def wait_until(pilot: Any, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll the app until ``predicate`` holds (instead of one fixed pause).

    It sleeps on the event loop rather than ``pilot.pause()``, which waits for the
    screen's message queue to drain and so would sit out a whole streamed reply. The
    timeout is generous because it only matters when the test fails: a real model on a
    loaded 2-core machine can take more than 10 s for a short reply.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await asyncio.sleep(0.02)


def notifications(app: GemmaChatApp) -> list[str]:
    """The messages of the notifications shown so far."""
    return [notification.message for notification in app._notifications]


async def send(pilot: Any, text: str) -> None:
    """Put a message in the input and submit it, waiting until the app has handled it.

    The app's handler is awaited directly: ``pilot.press("enter")`` would wait for the
    app to go idle, which it does not do while a reply streams, and a posted key event
    would race the assertions that follow. ``test_enter_key_sends`` covers the real key.
    """
    from gemma_chat.tui.widgets.prompt_input import PromptInput

    pilot.app.prompt.set_text(text)
    await pilot.app.on_prompt_input_submitted(PromptInput.Submitted(text))
    await asyncio.sleep(0)


async def settle(pilot: Any) -> None:
    """Let queued messages and timers run."""
    await pilot.pause(0.05)
    await asyncio.sleep(0)


def fully_rendered(app: Any) -> bool:
    """Whether every reply on screen is rendered to its end (a fast reply is generated
    long before the screen has drawn it; the content, and so the scroll range, still
    grows meanwhile)."""
    from gemma_chat.tui.widgets.chat_log import ModelReply

    for reply in app.query(ModelReply):
        task = reply.rendering
        if task is not None and not task.done():
            return False
    return True


async def answered(pilot: Any, count: int) -> None:
    """Wait until at least ``count`` replies are in the conversation and none is being
    generated."""
    from gemma_chat.chat.conversation import Role

    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            not app.generating
            and sum(t.role is Role.MODEL for t in app.conversation.turns) >= count
        ),
    )
    await settle(pilot)


def shown_turns(app: Any) -> list[str]:
    """The text of each turn on screen, in order (the branch shown)."""
    return [w.text for w in app.switcher.turn_widgets()]
